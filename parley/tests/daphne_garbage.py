"""daphne serving Parley, which on SIGUSR1 writes what a full garbage collection found.

    python -m parley.tests.daphne_garbage <daphne's arguments>

The collection runs with `gc.DEBUG_SAVEALL`, so what it would have freed is kept and written to
$GARBAGE_REPORT, one type name a line (`module.QualName`); the file appears complete at once.
"""

import gc
import os
import runpy
import signal
import sys


def report(*_) -> None:
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    gc.set_debug(0)
    names = [f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage]
    gc.garbage.clear()
    path = os.environ["GARBAGE_REPORT"]
    with open(path + ".part", "w") as out:
        out.write("".join(f"{name}\n" for name in names))
    os.replace(path + ".part", path)


signal.signal(signal.SIGUSR1, report)
sys.argv[0] = "daphne"
runpy.run_module("daphne", run_name="__main__")
