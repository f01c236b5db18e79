"""``python -m sevlm_lib.viz architecture PATH``: write the architecture diagram (``make figures``)."""

from sevlm_lib.viz.architecture import main

if __name__ == "__main__":
    raise SystemExit(main())
