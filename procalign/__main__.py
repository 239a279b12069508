from procalign.cli import run

run()
