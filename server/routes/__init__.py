"""HTTP routes: each handler is a thin line over the runner (app.state.service.runner)."""
