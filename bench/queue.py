"""Queue benchmark entry point: `uv run --group bench python bench/queue.py [--help]`.

The code lives in bench/_queue_bench.py. This file is tiny on purpose: `python bench/X.py`
puts bench/ first on sys.path, so a library's `import queue` anywhere in a bench script
lands on this file. Imported under that name, it hands back the standard library's module.
"""

import sys

if __name__ == "queue":
    import importlib.util
    import os
    import sysconfig

    _spec = importlib.util.spec_from_file_location(
        "queue", os.path.join(sysconfig.get_paths()["stdlib"], "queue.py")
    )
    assert _spec is not None and _spec.loader is not None
    _stdlib = importlib.util.module_from_spec(_spec)
    sys.modules["queue"] = _stdlib
    _spec.loader.exec_module(_stdlib)
    globals().update({k: v for k, v in vars(_stdlib).items() if not k.startswith("__")})
elif __name__ == "__main__":
    from pathlib import Path

    _bench = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _bench]
    sys.path.insert(0, str(_bench.parent))
    from bench._queue_bench import main

    main()
