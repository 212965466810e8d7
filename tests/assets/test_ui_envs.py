"""The UI follows the envs file: after a code-location reload (the UI's *Reload* button, GraphQL
``reloadRepositoryLocation``) the env dimension of every round x env asset is the declared envs, and a
bad file shows as the location's load error naming the file, env and key."""

import pytest

from dagster_ui import UI_ENVS, UI_ENVS_TOML, gql

ENV_DIMENSION = """{ assetNodeOrError(assetKey: {path: ["raw_samples"]}) { ... on AssetNode {
    partitionKeysByDimension { name partitionKeys } } } }"""
RELOAD = """mutation { reloadRepositoryLocation(repositoryLocationName: "orbit_assets") { __typename
    ... on WorkspaceLocationEntry { locationOrLoadError { __typename ... on PythonError { message causes { message } } } } } }"""


def _env_keys(port: int) -> list[str]:
    dims = gql(port, ENV_DIMENSION)["assetNodeOrError"]["partitionKeysByDimension"]
    return next(d["partitionKeys"] for d in dims if d["name"] == "env")


def _reload(port: int) -> dict:
    return gql(port, RELOAD)["reloadRepositoryLocation"]["locationOrLoadError"]


@pytest.mark.timeout(900)
def test_the_ui_shows_the_declared_envs_after_a_reload(dagster_dev):
    port, home = dagster_dev
    builtin = list(UI_ENVS)  # the envs the home declares: the others are switched off (conftest)
    assert sorted(_env_keys(port)) == sorted(builtin)
    (home / "envs.toml").write_text(UI_ENVS_TOML + '[envs.kuhn_fast]\nfamily = "openspiel"\ngame = "kuhn_poker"\n'
                                    'learner = { kind = "random" }\n')
    assert "kuhn_fast" not in _env_keys(port)  # not before a reload
    assert _reload(port)["__typename"] == "RepositoryLocation"
    assert sorted(_env_keys(port)) == sorted(builtin + ["kuhn_fast"])
    (home / "envs.toml").write_text(UI_ENVS_TOML + '[envs.kuhn_fast]\nfamily = "openspiel"\ngame = "chess"\n')
    error = _reload(port)
    assert error["__typename"] == "PythonError"
    shown = "\n".join([error["message"]] + [c["message"] for c in error["causes"]])  # what the UI shows
    assert "[envs.kuhn_fast] game: unsupported game 'chess'" in shown, shown
    (home / "envs.toml").write_text(UI_ENVS_TOML)  # removed from the file: gone from the UI after a reload
    assert _reload(port)["__typename"] == "RepositoryLocation"
    assert sorted(_env_keys(port)) == sorted(builtin)
