"""`ecmh serve`: an OpenAI-compatible server for power sampling (`pip install 'ecmh[serve]'`). The app factory is
`ecmh.serve.app.create_app`; requests are batched by `ecmh.serve.batcher`; docs/serve.md has the fields, the errors,
streaming, batching and Ray Serve. Nothing is imported here, so that `ecmh generate` runs without the serve extra."""
