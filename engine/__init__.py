"""The engine service: EngineService over vLLM (`service.py`), its models (`manager.py`,
`vllm_model.py`, `sources.py`), the lean chat stream (`fast_stream.py`) and the models it provides
itself (`builtin_models/`)."""
