"""Registries that installed packages extend, the way Python packages do it: through entry points.

A package adds a sampler, a cut or a backend by declaring an entry point in its group (`pyproject.toml`):

    [project.entry-points."ecmh.samplers"]
    lowtemp = "my_package.lowtemp:ENTRY"      # an ecmh.algorithms.Entry
    [project.entry-points."ecmh.cuts"]
    last = "my_package.cuts:LAST"             # an ecmh.cuts.Cut
    [project.entry-points."ecmh.backends"]
    llamacpp = "my_package.backend:RUNTIME"   # an ecmh.backends.factory.Runtime

Each `Registry` takes its group's entry points the first time it is read (not when ecmh is imported, so a plugin may
import ecmh), once per process: `ecmh generate`, the benchmark programs and lm-eval's model see them with no line of
the caller's code. A plugin that fails to load, gives the wrong kind of object or takes a name already registered is
left out with a warning naming its entry point and the fix.
"""

import warnings
from importlib.metadata import entry_points
from typing import Callable


class Registry(dict):
    """A name -> entry table of one entry-point `group`, whose entries are instances of `kind`. Registering is
    `register`; every read (`[]`, `in`, iteration, `len`, `keys`, `values`, `items`, `get`) first loads the plugins."""

    def __init__(self, group: str, kind: type):
        super().__init__()
        self.group, self.kind = group, kind
        self.plugins: dict[str, str] = {}  # name -> the entry point it came from ("package.module:object")
        self._listeners: list[Callable[[], None]] = []
        self._loaded = False

    def register(self, name: str, entry) -> None:
        super().__setitem__(name, entry)
        for listener in self._listeners:
            listener()

    def on_register(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after every registration (a plugin's included)."""
        self._listeners.append(listener)

    def registered_so_far(self) -> dict:
        """The entries registered until now, without loading the plugins: for a view that `on_register` keeps up to
        date, computed when ecmh is imported (a plugin may import ecmh, so none is loaded then)."""
        return dict(super().items())

    def load_plugins(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for point in entry_points(group=self.group):
            where = f"the entry point {point.name} = {point.value!r} of group {self.group!r}"
            if dict.__contains__(self, point.name):
                warnings.warn(f"{where} is left out: the name {point.name!r} is taken; rename the entry point.")
                continue
            try:
                entry = point.load()
            except Exception as error:  # a broken plugin must not break ecmh
                warnings.warn(f"{where} is left out: loading it raised {type(error).__name__}: {error}")
                continue
            if not isinstance(entry, self.kind):
                warnings.warn(f"{where} is left out: it gives a {type(entry).__name__}, not an "
                              f"{self.kind.__module__}.{self.kind.__qualname__}; point it at one.")
                continue
            self.plugins[point.name] = point.value
            self.register(point.name, entry)

    def __getitem__(self, name):
        self.load_plugins()
        return super().__getitem__(name)

    def __contains__(self, name) -> bool:
        self.load_plugins()
        return super().__contains__(name)

    def __iter__(self):
        self.load_plugins()
        return super().__iter__()

    def __len__(self) -> int:
        self.load_plugins()
        return super().__len__()

    def keys(self):
        self.load_plugins()
        return super().keys()

    def values(self):
        self.load_plugins()
        return super().values()

    def items(self):
        self.load_plugins()
        return super().items()

    def get(self, name, default=None):
        self.load_plugins()
        return super().get(name, default)
