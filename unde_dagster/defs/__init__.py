"""Dagster objects, one folder per stage; `unde_dagster.definitions` loads this folder.

Each stage folder holds its asset (`assets.py`), its checks (`checks.py`) and what launches
it (`automation.py`: the stage's job, schedules and sensors), all under literal names. The
modules at this level are what the stages share on the Dagster side: resources, the brand
partitions, the image stages' batch loop, the work sensors' rules and the checks' reporting.
"""
