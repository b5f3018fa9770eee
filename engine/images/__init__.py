"""The engine's diffusion runner: text-to-image `diffusers` pipelines served beside the vLLM
models (`runner.DiffusionModel`), requests checked against the model (`options`), encoded
(`encode`) and answered through GenerateImages/StreamImages (`serve`)."""
