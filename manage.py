#!/usr/bin/env python
"""Django's command-line utility. Outside `make run`, set DATABASE_URL and REDIS_URL
or start the embedded services with `python -m app.stack manage ...`."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
