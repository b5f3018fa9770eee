"""Image generation at the gateway: the OpenAI image RPCs (`service.py`), the image store
(`store.py`: local files or S3) and the signed links to stored images (`links.py`)."""
