"""The code location loads, and every asset says which role (host) runs it."""

from pathlib import Path

import dagster as dg
import yaml

from unde_dagster.definitions import defs

ROLES = {"apify", "downloader", "collage", "ximilar", "scraper", "generator"}


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)


def test_every_asset_has_a_role_group_and_tag() -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name in ROLES, key
        assert node.tags.get("unde/role") == node.group_name, key
        assert node.owners, key


def test_the_demo_commands_import() -> None:
    """The README's demo commands load the definitions the same way (caught a stale import)."""
    import unde_local.demo
    import unde_local.demo_scraper

    defs = unde_local.demo_scraper.defs
    assert unde_local.demo.brand_catalog_pipeline.name in {j.name for j in defs.jobs or []}
    workspace = yaml.safe_load((Path(__file__).parents[1] / "workspace.yaml").read_text())
    [entry] = workspace["load_from"]  # the demo launches on the workspace's one location
    assert entry["python_module"]["location_name"] == unde_local.demo.LOCATION
