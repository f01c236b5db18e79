"""``python -m sevlm_lib.check``: list what a profile needs and what is missing (the command lives in :mod:`sevlm_lib.cli.check`)."""

if __name__ == "__main__":
    from sevlm_lib.cli.check import main

    raise SystemExit(main())
