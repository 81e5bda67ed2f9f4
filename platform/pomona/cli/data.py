"""``pomona datasets``, ``pomona ingest`` and ``pomona data``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TaskID
from rich.table import Table

from pomona.cli.console import console, err_console, progress_bar
from pomona.config import load_config
from pomona.data.demo import ImageFormat, Layout, write_digits
from pomona.data.discover import LabelFrom
from pomona.data.ingest import IngestConfig, ingest
from pomona.data.manifest import SPLITS, Manifest, Preprocessing
from pomona.data.shards import REJECTED_FILE, read_manifest, verify
from pomona.errors import ConfigError, DatasetError

datasets_app = typer.Typer(
    help="Write bundled demo datasets as image folders.", no_args_is_help=True
)
data_app = typer.Typer(help="Inspect ingested datasets.", no_args_is_help=True)
_SIZE = re.compile(r"^(\d+)(?:x(\d+))?$")


def parse_image_size(text: str) -> tuple[int, int]:
    """``"64"`` -> (64, 64); ``"48x64"`` -> (48, 64) as height x width."""
    match = _SIZE.match(text.strip().lower())
    if not match:
        raise ConfigError(f"--image-size takes N or HxW (e.g. 64 or 48x64), got {text!r}")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


@datasets_app.command("digits")
def digits(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Directory to create.")],
    layout: Annotated[
        Layout, typer.Option(help="folders: `OUT/<label>/<n>.png`; prefix: `OUT/<label>_<n>.png`")
    ] = "folders",
    size: Annotated[int, typer.Option(help="Side of the written images in pixels.")] = 32,
    image_format: Annotated[ImageFormat, typer.Option("--format", help="png or jpeg.")] = "png",
) -> None:
    """Write scikit-learn's 1,797 real handwritten digits (10 classes) as image files."""
    count = write_digits(out, layout=layout, size=size, image_format=image_format)
    console.print(f"wrote {count} {image_format} images of 10 classes to {out} ({layout} layout)")


# The options not named after their key's last part (pomona.config.flag_of).
_FLAG_NAMES = {
    "src": "SRC",
    "out": "OUT",
    "preprocessing.height": "--image-size",
    "preprocessing.width": "--image-size",
}


def ingest_command(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="Labelled image folder.")],
    out: Annotated[
        str,
        typer.Argument(
            metavar="OUT", help="Dataset directory or URI (file://, s3://, gs://) to create."
        ),
    ],
    image_size: Annotated[str, typer.Option(help="Square side N or HxW.")] = "64",
    channels: Annotated[int, typer.Option(help="1 (grayscale) or 3 (RGB).")] = 3,
    resize: Annotated[
        str, typer.Option(help="crop (keep aspect, centre-crop) or stretch.")
    ] = "crop",
    split: Annotated[str, typer.Option(help="train,val,test fractions.")] = "0.7,0.15,0.15",
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    shard_rows: Annotated[int, typer.Option(help="Rows per Parquet shard.")] = 1024,
    label_from: Annotated[LabelFrom, typer.Option(help="Where labels come from.")] = "auto",
    workers: Annotated[
        int | None, typer.Option(help="Decoding processes [default: all cores].")
    ] = None,
    max_pixels: Annotated[int | None, typer.Option(help="Reject larger images undecoded.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing OUT.")
    ] = False,
) -> None:
    """Validate, preprocess and split an image folder into Parquet shards with a manifest."""
    height, width = parse_image_size(image_size)
    fractions = [part.strip() for part in split.split(",")]
    if len(fractions) != 3:
        raise ConfigError(
            f"--split takes three comma-separated fractions (train,val,test), got {split!r}"
        )
    flags = {
        "src": src,
        "out": out,
        "preprocessing.height": height,
        "preprocessing.width": width,
        "preprocessing.channels": channels,
        "preprocessing.resize": resize,
        "split": dict(zip(SPLITS, fractions, strict=True)),
        "seed": seed,
        "shard_rows": shard_rows,
        "label_from": label_from,
        "workers": workers,
        "max_pixels": max_pixels,
        "overwrite": overwrite,
    }
    config = load_config(IngestConfig, flags=flags, flag_names=_FLAG_NAMES)
    with progress_bar("ingest") as bar:
        # Created at the first report, once the checks passed and the files are found: a
        # mistake prints its error line without an empty bar above it.
        tasks: list[TaskID] = []

        def update(done: int, rejected: int, total: int) -> None:
            if not tasks:
                tasks.append(bar.add_task("ingest", total=total, status=""))
            bar.update(tasks[0], completed=done, total=total, status=f"{rejected} rejected")

        manifest = ingest(config, progress=update)
    _print_summary(out, manifest)
    if manifest.rejected:
        console.print(f"rejected files and reasons: {out.rstrip('/')}/{REJECTED_FILE}")
    folded = _differ_in_case(manifest.classes)
    if folded:
        err_console.print(
            f"note: classes that differ only in case are separate classes: {folded}; rename "
            "the folders or files if they are one class",
            soft_wrap=True,
            markup=False,
        )


def _differ_in_case(classes: list[str]) -> str:
    """The classes whose names differ only in case (``Cat and cat``), or ``""``."""
    groups: dict[str, list[str]] = {}
    for name in classes:
        groups.setdefault(name.casefold(), []).append(name)
    return "; ".join(" and ".join(group) for group in groups.values() if len(group) > 1)


def inspect(
    dataset: Annotated[
        str, typer.Argument(metavar="DATASET", help="Ingested dataset directory or URI.")
    ],
) -> None:
    """Print classes, counts per split and class, image shape; verify shard checksums."""
    manifest = read_manifest(dataset)
    _print_summary(dataset, manifest)
    problems = verify(dataset, manifest)
    if problems:
        raise DatasetError("checksum verification failed:\n  " + "\n  ".join(problems))
    shards = sum(len(s.shards) for s in manifest.splits.values())
    console.print(f"checksums: all {shards} shards OK")


def _print_summary(dataset: str, manifest: Manifest) -> None:
    spec: Preprocessing = manifest.preprocessing
    console.print(
        f"dataset {dataset}: {manifest.num_classes} classes, images {spec.height}x{spec.width}x"
        f"{spec.channels} ({spec.resize}), labels from {manifest.label_from}, seed {manifest.seed}"
    )
    console.print(
        f"found {manifest.found}, ingested {manifest.ingested}, rejected {manifest.rejected}, "
        f"ignored {manifest.ignored}, exact duplicates {manifest.duplicates}"
    )
    table = Table("class", *SPLITS, "total")
    for name in manifest.classes:
        counts = [manifest.splits[s].counts.get(name, 0) for s in SPLITS]
        table.add_row(name, *map(str, counts), str(sum(counts)))
    table.add_section()
    table.add_row("total", *(str(manifest.splits[s].rows) for s in SPLITS), str(manifest.ingested))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.add_typer(datasets_app, name="datasets")
    app.command("ingest")(ingest_command)
    data_app.command("inspect")(inspect)
    app.add_typer(data_app, name="data")
