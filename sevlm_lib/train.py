"""``python -m sevlm_lib.train``: train one SEVLM variant (the command lives in :mod:`sevlm_lib.cli.train`)."""

if __name__ == "__main__":
    from sevlm_lib.cli.train import main

    raise SystemExit(main())
