"""``python -m sevlm_lib.evaluate``: score a checkpoint on a split (the command lives in :mod:`sevlm_lib.cli.evaluate`)."""

if __name__ == "__main__":
    from sevlm_lib.cli.evaluate import main

    raise SystemExit(main())
