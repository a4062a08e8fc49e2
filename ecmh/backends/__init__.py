"""Model runtimes beneath the one sampler core (`ecmh.kernel`)."""
