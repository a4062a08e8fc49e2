"""`ecmh serve` scaled out on Ray Serve (`pip install 'ray[serve]'`): `application(model, replicas=N)` is a Ray Serve
application whose replicas each load the model once and answer with the app of `ecmh.serve.app.create_app` (its own
batcher); Ray Serve's proxy spreads the requests over them.

    from ray import serve
    from ecmh.serve.ray_serve import application

    serve.run(application("smollm2-135m-instruct", replicas=2), route_prefix="/")
"""

from typing import Optional

from ..models import DEFAULT_MODEL


def application(model: str = DEFAULT_MODEL, *, replicas: int = 2, num_cpus: float = 1, num_gpus: float = 0,
                name: str = "ecmh", **app_options: Optional[object]):
    """A bound Ray Serve deployment of `replicas` replicas of the server, each with `num_cpus` CPUs and `num_gpus`
    GPUs; `app_options` go to `create_app` (`backend`, `max_batch_rows`, `batch_wait_ms`, `device`, `dtype`,
    `tensor_parallel_size`)."""
    from ray import serve

    def build():  # runs on each replica: the model loads there
        from .app import create_app

        return create_app(model, **app_options)

    @serve.deployment(name=name, num_replicas=replicas, ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus})
    @serve.ingress(build)
    class Server:
        """One replica: one model and its batcher."""

    return Server.bind()
