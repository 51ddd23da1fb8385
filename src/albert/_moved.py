"""Import paths that moved when the package became one folder per layer: each old path still imports, for one
release, as the very module it became (the same object, so its classes and state are shared), with a
DeprecationWarning naming the new path. CHANGELOG.md lists them, and the one path that changed without this."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED = {
    "albert.data.reader": "albert.io.files",
    "albert.hub": "albert.io.hub",
    "albert.outputs": "albert.io.output_dirs",
    "albert.tokenizer": "albert.tokenization.tokenizer",
    "albert.tokenizer_json": "albert.tokenization.tokenizer_json",
    "albert.vocabulary": "albert.tokenization.vocabulary",
    "albert.config": "albert.modeling.config",
    "albert.model": "albert.modeling.backbone",
    "albert.early_exit": "albert.modeling.early_exit",
    "albert.checkpoint": "albert.modeling.pretrained",
    "albert.heads": "albert.modeling.heads",
    "albert.kernels": "albert.runtime.kernels",
    "albert.tf_import": "albert.convert.tf",
    "albert.bert_import": "albert.convert.bert",
    "albert.export": "albert.convert.export",
    "albert.inference.fill_mask": "albert.inference.fast_fill_mask",
    "albert.inference.server": "albert.serving.launch",
    "albert.inference.http_limits": "albert.serving.http_limits",
    "albert.inference.serve_settings": "albert.serving.serve_settings",
    "albert.inference.batcher": "albert.serving.batcher",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and loads it as the new module. Import machinery stamps the old name's spec on whatever
    `create_module` returns; `exec_module` puts the module's own spec back."""

    def __init__(self) -> None:
        self._own_specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {MOVED[spec.name]}; the old path goes in the next release",
                      DeprecationWarning, stacklevel=2)
        module = importlib.import_module(MOVED[spec.name])
        self._own_specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._own_specs[module.__name__]


def install() -> None:
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
