"""The engine's own guard on what a LoadModel request may make it open (issue 11, finding 9): a
`local_path` or a path-valued `tokenizer` only under the model roots (symlinks followed, `..`
applied, the same refusal whether or not the path exists), a `chat_template` only as text. vLLM
is replaced by a stand-in that records what it would have been given; the arguments are read
back with vLLM's own parser."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import ClassVar

import grpc
import pytest
from vllm.renderers.chat_utils import load_chat_template

from bud.engine.v1 import engine_service_pb2 as pb
from budrt.errors import ServiceError, echo
from engine import manager
from engine.settings import EngineSettings
from engine.sources import allowed_path, resolve_source
from engine.vllm_model import chat_template_file, parse_vllm_args, vllm_cli_args

OUTSIDE = "/etc/passwd"  # a file every test machine has, outside every root


class RecordingModel:
    """Stands in for `VllmModel`: records the path and the engine arguments it was started with."""

    started: ClassVar[list[tuple[str, pb.EngineArgs]]] = []

    def __init__(self, name: str, source: pb.ModelSource, runner: int, args: pb.EngineArgs) -> None:
        self.name, self.source, self.runner, self.args = name, source, runner, args
        self.max_model_len = 64
        self.dead = False

    async def start(self, model_path: str, revision: str = "", timeout: float | None = None) -> None:
        RecordingModel.started.append((model_path, self.args))

    async def stop(self) -> None:
        pass


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An allowed model root (not the data dir's) holding one model directory, `root/llama`."""
    path = tmp_path / "models-root"
    (path / "llama").mkdir(parents=True)
    (path / "llama" / "config.json").write_text("{}")
    return path


@pytest.fixture
def settings(tmp_path: Path, root: Path) -> EngineSettings:
    return EngineSettings(data_dir=tmp_path / "data", allowed_model_roots=[root])


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch, settings: EngineSettings) -> manager.ModelManager:
    RecordingModel.started = []
    monkeypatch.setattr(manager, "VllmModel", RecordingModel)
    monkeypatch.setattr(manager, "_freeze_heap", lambda: None)
    return manager.ModelManager(settings)


async def _refused(
    models: manager.ModelManager, source: pb.ModelSource, args: pb.EngineArgs | None = None
) -> ServiceError:
    """The error LoadModel answers, checked to come before any slot or any vLLM start."""
    with pytest.raises(ServiceError) as caught:
        await models.load("m", source, pb.RUNNER_GENERATE, args or pb.EngineArgs())
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert models.slots == {} and RecordingModel.started == []
    return caught.value


async def test_etc_passwd_as_local_path_is_refused(models: manager.ModelManager) -> None:
    err = await _refused(models, pb.ModelSource(local_path=OUTSIDE))
    assert err.param == "source.local_path" and "model roots" in err.message


async def test_etc_passwd_as_tokenizer_is_refused(models: manager.ModelManager, root: Path) -> None:
    source = pb.ModelSource(local_path=str(root / "llama"))
    err = await _refused(models, source, pb.EngineArgs(tokenizer=OUTSIDE))
    assert err.param == "args.tokenizer" and "model roots" in err.message


async def test_etc_passwd_as_chat_template_is_refused(models: manager.ModelManager, root: Path) -> None:
    source = pb.ModelSource(local_path=str(root / "llama"))
    err = await _refused(models, source, pb.EngineArgs(chat_template=OUTSIDE))
    assert err.param == "args.chat_template" and "Jinja text" in err.message


async def test_a_symlink_inside_a_root_pointing_outside_is_refused(
    models: manager.ModelManager, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "secret-model"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (root / "innocent").symlink_to(outside)
    err = await _refused(models, pb.ModelSource(local_path=str(root / "innocent")))
    assert err.param == "source.local_path"
    assert str(outside) not in err.message  # where the link points is not told
    llama = pb.ModelSource(local_path=str(root / "llama"))
    tokenizer = await _refused(models, llama, pb.EngineArgs(tokenizer=str(root / "innocent")))
    assert tokenizer.param == "args.tokenizer"


@pytest.mark.parametrize(
    "relative",
    ["../../../../../../../../etc/passwd", "llama/../../secret-model", "no-such-dir/../../secret-model"],
)
async def test_dot_dot_traversal_out_of_a_root_is_refused(
    models: manager.ModelManager, root: Path, tmp_path: Path, relative: str
) -> None:
    (tmp_path / "secret-model").mkdir()
    (tmp_path / "secret-model" / "config.json").write_text("{}")
    err = await _refused(models, pb.ModelSource(local_path=f"{root}/{relative}"))
    assert err.param == "source.local_path"


def test_the_refusal_is_the_same_whether_or_not_the_path_exists(root: Path, tmp_path: Path) -> None:
    """No existence oracle: an outside path that exists and one that does not get one answer
    (apart from the quoted input), through a link or not."""
    (tmp_path / "exists").write_text("x")
    (root / "link-to-existing").symlink_to(tmp_path / "exists")
    (root / "link-to-missing").symlink_to(tmp_path / "missing")

    def message(value: str) -> str:
        with pytest.raises(ServiceError) as caught:
            allowed_path(value, [root], "source.local_path")
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        return caught.value.message.replace(echo(value), "<path>")

    answers = {
        message(str(tmp_path / "exists")),
        message(str(tmp_path / "missing")),
        message(str(root / "link-to-existing")),
        message(str(root / "link-to-missing")),
        message(f"{root}/../exists"),
        message(f"{root}/../missing"),
    }
    assert len(answers) == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("relative/dir", "absolute"),
        ("~/models/x", "absolute"),
        ("/models/x\0/../../etc/passwd", "absolute"),  # NUL: refused, not a ValueError (a 500)
        ("/" + "a" * 5000, "absolute"),
    ],
)
def test_paths_that_cannot_be_resolved_are_refused_first(root: Path, value: str, reason: str) -> None:
    with pytest.raises(ServiceError) as caught:
        allowed_path(value, [root], "source.local_path")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and reason in caught.value.message
    assert len(caught.value.message) < 400  # the input is quoted bounded


async def test_an_admins_model_and_tokenizer_under_a_root_load_resolved(
    models: manager.ModelManager, root: Path, tmp_path: Path
) -> None:
    (root / "tokenizers" / "t").mkdir(parents=True)
    (root / "current").symlink_to(root / "llama")  # a link that stays inside the root is fine
    source = pb.ModelSource(local_path=str(root / "current"))
    args = pb.EngineArgs(tokenizer=f"{root}/llama/../tokenizers/t", chat_template="{{ messages }}")
    served = await models.load("m", source, pb.RUNNER_GENERATE, args)
    assert served.state == pb.MODEL_STATE_READY, served.error
    assert served.source == source and served.args == args  # reported as asked
    [(model_path, started_args)] = RecordingModel.started
    assert model_path == str((root / "llama").resolve())
    assert started_args.tokenizer == str((root / "tokenizers" / "t").resolve())  # what vLLM opens


async def test_a_model_under_the_data_dirs_models_folder_is_allowed_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    RecordingModel.started = []
    monkeypatch.setattr(manager, "VllmModel", RecordingModel)
    monkeypatch.setattr(manager, "_freeze_heap", lambda: None)
    model = tmp_path / "data" / "models" / "mine"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    models = manager.ModelManager(EngineSettings(data_dir=tmp_path / "data"))
    served = await models.load("m", pb.ModelSource(local_path=str(model)), 0, pb.EngineArgs())
    assert served.state == pb.MODEL_STATE_READY, served.error
    with pytest.raises(ServiceError) as caught:  # the data dir itself is no root
        await models.load("other", pb.ModelSource(local_path=str(tmp_path / "data")), 0, pb.EngineArgs())
    assert caught.value.param == "source.local_path"


async def test_a_root_that_is_itself_a_symlink_works(tmp_path: Path, root: Path) -> None:
    (tmp_path / "mnt").symlink_to(root)
    resolved = resolve_source(pb.ModelSource(local_path=str(root / "llama")), tmp_path, [tmp_path / "mnt"])
    assert resolved.model == str((root / "llama").resolve())


async def test_a_hugging_face_tokenizer_id_stays_allowed(models: manager.ModelManager, root: Path) -> None:
    source = pb.ModelSource(local_path=str(root / "llama"))
    served = await models.load("m", source, 0, pb.EngineArgs(tokenizer="acme/tokenizer"))
    assert served.state == pb.MODEL_STATE_READY, served.error
    assert RecordingModel.started[0][1].tokenizer == "acme/tokenizer"


async def test_an_id_that_is_a_path_in_the_engines_working_directory_is_held_to_the_roots(
    models: manager.ModelManager, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vLLM and transformers open `org/name` as a directory relative to the working directory
    before they ask the hub: such an id is that path, and it is outside the roots."""
    (tmp_path / "work" / "home" / "secrets").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    llama = pb.ModelSource(local_path=str(root / "llama"))
    err = await _refused(models, llama, pb.EngineArgs(tokenizer="home/secrets"))
    assert err.param == "args.tokenizer"
    source = pb.ModelSource(hugging_face=pb.HuggingFaceModel(id="home/secrets"))
    assert (await _refused(models, source)).param == "source.hugging_face.id"


@pytest.mark.parametrize("value", ["../etc", "a/b/c", "-x", "--config", "acme/.."])
async def test_malformed_ids_are_refused(models: manager.ModelManager, root: Path, value: str) -> None:
    source = pb.ModelSource(hugging_face=pb.HuggingFaceModel(id=value))
    assert (await _refused(models, source)).param == "source.hugging_face.id"
    llama = pb.ModelSource(local_path=str(root / "llama"))
    assert (await _refused(models, llama, pb.EngineArgs(tokenizer=value))).param == "args.tokenizer"


def test_an_inline_template_reaches_vllm_as_text() -> None:
    """vLLM opens `--chat-template` as a file first; what it opens is the engine's own file
    holding the request's text, so it reads the text back — never a file the text names."""
    for text in ("{{ messages[0].content }}{% if true %}!{% endif %}", OUTSIDE):
        args = pb.EngineArgs(chat_template=text)
        with chat_template_file(args) as path:
            assert path is not None
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            namespace = parse_vllm_args(vllm_cli_args("m", "/models/x", 0, args, "", path))
            assert namespace.chat_template == str(path)
            assert load_chat_template(namespace.chat_template) == text  # vLLM's own loader
        assert not path.parent.exists()  # removed with the model
    with chat_template_file(pb.EngineArgs()) as none:
        assert none is None


def test_the_template_text_is_never_an_argument_of_its_own() -> None:
    args = pb.EngineArgs(chat_template="{{ x }}")
    with pytest.raises(ValueError):
        vllm_cli_args("m", "/models/x", 0, args)


@pytest.mark.parametrize(
    "args",
    [
        pb.EngineArgs(reasoning_parser="--config"),  # a separate "--config" made vLLM read a file
        pb.EngineArgs(tool_call_parser="-O3"),
        pb.EngineArgs(tokenizer="-x"),  # a separate "-x" made argparse exit the process
    ],
)
def test_option_shaped_values_stay_values(args: pb.EngineArgs) -> None:
    argv = vllm_cli_args("m", "/models/x", 0, args)
    assert all(arg.startswith("--") for arg in argv)
    try:
        namespace = parse_vllm_args(argv)
    except ServiceError as err:  # vLLM may refuse the value, as a client error
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    else:
        assert getattr(namespace, "config", None) in (None, "")


def test_an_argument_vllm_refuses_is_invalid_argument_not_an_exit() -> None:
    with pytest.raises(ServiceError) as caught:
        parse_vllm_args(["--model=/models/x", "--max-model-len", "--no-such-option"])
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and caught.value.param == "args"


def test_roots_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BUD_ALLOWED_MODEL_ROOTS", f"/models{os.pathsep}/srv/weights")
    settings = EngineSettings(data_dir=tmp_path)
    assert settings.model_roots() == (tmp_path / "models", Path("/models"), Path("/srv/weights"))
    monkeypatch.delenv("BUD_ALLOWED_MODEL_ROOTS")
    assert EngineSettings(data_dir=tmp_path).model_roots() == (tmp_path / "models",)
    with pytest.raises(ValueError, match="absolute"):
        EngineSettings(allowed_model_roots=[Path("models")])
