"""Ray job entrypoint for `pomona sweep`: the same code path as the CLI, for the Ray Jobs API.

    ray job submit --address http://127.0.0.1:8265 -- python jobs/sweep.py [ARGS...]

Arguments are those of `pomona sweep --help`. Inside a job, Ray sets RAY_ADDRESS, so the
command joins the cluster instead of starting a local Ray.
"""

import sys

from pomona.cli import main

if __name__ == "__main__":
    main(["sweep", *sys.argv[1:]])
