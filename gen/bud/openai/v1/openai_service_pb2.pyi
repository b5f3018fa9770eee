from bud.api.v1 import json_pb2 as _json_pb2
from bud.openai.v1 import chat_pb2 as _chat_pb2
from bud.openai.v1 import completion_pb2 as _completion_pb2
from bud.openai.v1 import embedding_pb2 as _embedding_pb2
from bud.openai.v1 import image_pb2 as _image_pb2
from bud.openai.v1 import model_pb2 as _model_pb2
from bud.openai.v1 import response_pb2 as _response_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
