"""``python -m sevlm_lib.predict``: explain the emotion of an image with a checkpoint (the command lives in :mod:`sevlm_lib.cli.predict`)."""

if __name__ == "__main__":
    from sevlm_lib.cli.predict import main

    raise SystemExit(main())
