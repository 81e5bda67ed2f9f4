"""Options every command shares (set by the root callback) and the Ray connection they imply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pomona.registry import Registry


@dataclass
class Session:
    """Global CLI options.

    Attributes:
        address: Ray cluster address, or None for ``RAY_ADDRESS`` / an embedded local Ray.
        registry: model registry root (directory or URI) for model references and
            ``pomona registry``, from ``--registry`` or ``$POMONA_REGISTRY``; None for
            ``~/.pomona/registry``.
        verbose: stream Ray worker logs and pomona's INFO logs to the terminal.
    """

    address: str | None = None
    registry: str | None = None
    verbose: bool = False

    def global_args(self) -> list[str]:
        """These options as root flags, for commands that run other commands (``demo``)."""
        return [
            *(["--address", self.address] if self.address else []),
            *(["--registry", self.registry] if self.registry else []),
            *(["-v"] if self.verbose else []),
        ]

    def open_registry(self, root: str | None = None) -> Registry:
        """The registry that model references resolve against.

        Args:
            root: a command's own ``--registry`` (kept for existing scripts), which wins over
                the global one.
        """
        from pomona.registry import Registry

        return Registry(root or self.registry or None)

    def connect(self) -> None:
        """Start or join Ray for a command that needs it."""
        from pomona.cluster.runtime import ensure_ray

        ensure_ray(self.address, log_to_driver=self.verbose)


session = Session()
