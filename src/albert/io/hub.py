"""Where a model lives: a local directory, a model shipped inside this package, or a hub id.

Kept free of torch so that tools which only read files (the tokenizer, `albert fill-mask` through ONNX
Runtime) start without the ~1-3 s that importing torch costs.
"""

from __future__ import annotations

from pathlib import Path

from albert.errors import CheckpointError

CONFIG_NAME = "config.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_INDEX_NAME = "model.safetensors.index.json"
TORCH_WEIGHTS_NAME = "pytorch_model.bin"

OFFICIAL_NAMES = [f"albert-{size}-{v}" for v in ("v1", "v2") for size in ("base", "large", "xlarge", "xxlarge")]
# The hub moved the official checkpoints under the `albert/` organisation; the bare names are aliases.
HUB_ALIASES = {name: f"albert/{name}" for name in OFFICIAL_NAMES}
HUB_FILES = [CONFIG_NAME, SAFE_WEIGHTS_NAME, SAFE_INDEX_NAME, "model-*.safetensors", TORCH_WEIGHTS_NAME,
             "spiece.model", "tokenizer_config.json", "special_tokens_map.json"]



# ----- name resolution -----
def packaged_models_dir() -> Path:
    return Path(__file__).parents[1] / "models"


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A local directory, a model shipped in this package, or a hub id (through huggingface_hub)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; expected a model directory (config.json + weights)")
    name = str(name_or_path)
    packaged = packaged_models_dir() / name
    if (packaged / CONFIG_NAME).is_file() or (packaged / "spiece.model").is_file():
        return packaged
    tried = [f"no local directory {path}"]
    repo_id = HUB_ALIASES.get(name, name)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        tried.append("hub download unavailable: huggingface_hub is not installed (pip install 'albert-lm[hub]')")
    else:
        try:
            return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
        except (OSError, ValueError) as e:  # offline, unknown repo, invalid id: all reported below
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            tried.append(f"hub id {repo_id!r} failed ({type(e).__name__}: {reason[:200]})")
    raise CheckpointError(f"cannot load {name!r}: " + "; ".join(tried))
