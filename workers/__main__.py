"""`python -m workers …` is `oms-postsales …` (the dev command starts workers this way)."""

from workers.cli import main

main()
