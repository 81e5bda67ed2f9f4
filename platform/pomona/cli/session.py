"""Options every command shares (set by the root callback) and the Ray connection they imply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Session:
    """Global CLI options.

    Attributes:
        address: Ray cluster address, or None for ``RAY_ADDRESS`` / an embedded local Ray.
        verbose: stream Ray worker logs and pomona's INFO logs to the terminal.
        registry: registry root or URI, or None for ``$POMONA_REGISTRY`` / the default.
    """

    address: str | None = None
    verbose: bool = False
    registry: str | None = None

    def global_args(self) -> list[str]:
        """These options as root flags, for commands that run other commands (``demo``)."""
        return [
            *(["--address", self.address] if self.address else []),
            *(["-v"] if self.verbose else []),
        ]

    def connect(self) -> None:
        """Start or join Ray for a command that needs it."""
        from pomona.cluster.runtime import ensure_ray

        ensure_ray(self.address, log_to_driver=self.verbose)


session = Session()
