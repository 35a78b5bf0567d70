"""The web app without a browser: pages, pagination, headers, the token, and 404s."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from executor import catalog, web
from executor.canonical import sha256_hex


def _key(run_id: str) -> dict[str, str]:
    return {"run_id": run_id, "statement_sha256": sha256_hex(run_id.encode())}


def _catalog(path: Path, runs: int) -> str:
    cat = catalog.open_catalog(path)
    cat.put_many(
        [
            {
                "runs": [
                    {
                        **_key(f"20261201T{i:06d}Z-train-{i:06x}"),
                        "name": "train" if i % 2 else "prepare",
                        "status": "succeeded",
                        "started": f"2026-12-01T00:00:{i:09d}Z",
                        "path": "/nowhere",
                    }
                ],
                "metrics": [
                    {
                        **_key(f"20261201T{i:06d}Z-train-{i:06x}"),
                        "file": "m.json",
                        "key": "acc",
                        "value": i / 1000,
                    }
                ],
            }
            for i in range(runs)
        ]
    )
    cat.close()
    return str(path)


def test_the_ledger_pages_and_filters(tmp_path: Path) -> None:
    client = web.create_app(_catalog(tmp_path / "c.sqlite", 120)).test_client()
    first = client.get("/").data.decode()
    assert len(re.findall(r'href="/run/', first)) == 50 and 'id="next"' in first
    last = client.get("/?page=3").data.decode()
    assert len(re.findall(r'href="/run/', last)) == 20 and 'id="next"' not in last
    trains = client.get("/?name=train").data.decode()
    assert len(re.findall(r'href="/run/', trains)) == 50  # 60 train runs: a full first page
    best = client.get("/?where=metrics.acc+%3E+0.117").data.decode()
    assert len(re.findall(r'href="/run/', best)) == 2


def test_the_next_page_keeps_every_filter(tmp_path: Path) -> None:
    """The next link dropped the metric filter: page 2 of "acc > 0.01 and train" listed
    every run. It keeps each filter, each --where too, and only the page changes."""
    client = web.create_app(_catalog(tmp_path / "c.sqlite", 240)).test_client()
    first = client.get("/?name=train&where=metrics.acc+%3E+0.01&where=metrics.acc+%3C+0.2")
    (link,) = re.findall(r'id="next" href="([^"]+)"', first.data.decode())
    second = client.get("/" + link.replace("&amp;", "&")).data.decode()
    shown = re.findall(r'href="/run/[^"]*-train-([0-9a-f]+)"', second)
    assert shown, second
    # runs 11..199 that are train runs (odd), newest first: page 2 is the 45 after the first 50
    values = sorted((int(h, 16) for h in shown), reverse=True)
    assert all(i % 2 and 10 < i < 200 for i in values) and len(values) == 45
    (back,) = re.findall(r'id="previous" href="([^"]+)"', second)
    assert "where=metrics.acc" in back and "name=train" in back


def test_a_column_sorts_the_ledger_and_the_order_is_kept_across_pages(tmp_path: Path) -> None:
    """The ledger could not be sorted: a click on a metric column orders it, greatest first,
    a second click least first; the next page keeps the order and every filter."""
    client = web.create_app(_catalog(tmp_path / "c.sqlite", 120)).test_client()
    page = client.get("/?search=rai").data.decode()  # a part of the name: the train runs
    (link,) = re.findall(r'<a class="sort" title="sort by it" href="\?([^"]+)">acc</a>', page)
    link = link.replace("&amp;", "&")
    assert "search=rai" in link and "order=desc" in link
    ordered = client.get("/?" + link).data.decode()
    shown = [int(h, 16) for h in re.findall(r'href="/run/[^"]*-train-([0-9a-f]+)"', ordered)]
    assert shown == list(range(119, 19, -2))  # acc = i / 1000: the greatest first
    assert "sorted by metrics.m.json:acc" in ordered and "-prepare-" not in ordered
    (more,) = re.findall(r'id="next" href="\?([^"]+)"', ordered)
    second = client.get("/?" + more.replace("&amp;", "&")).data.decode()
    rest = [int(h, 16) for h in re.findall(r'href="/run/[^"]*-train-([0-9a-f]+)"', second)]
    assert rest == list(range(19, 0, -2))
    (turn,) = re.findall(r'<a class="sort" title="sort by it" href="\?([^"]+)">acc</a>', ordered)
    least = client.get("/?" + turn.replace("&amp;", "&")).data.decode()
    first = [int(h, 16) for h in re.findall(r'href="/run/[^"]*-train-([0-9a-f]+)"', least)]
    assert first[:3] == [1, 3, 5]
    assert client.get("/?sort=bogus").status_code == 404  # an error page, not a crash


def test_every_response_forbids_scripts_and_unknown_names_are_404(tmp_path: Path) -> None:
    client = web.create_app(_catalog(tmp_path / "c.sqlite", 3)).test_client()
    for path in ("/", "/compare", "/regenerations", "/run/nope", "/static/../pyproject.toml"):
        response = client.get(path)
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/run/nope").status_code == 404
    assert client.get("/static/../pyproject.toml").status_code == 404
    assert client.get("/lineage/x?direction=sideways").status_code == 400


def test_with_a_token_every_request_needs_it_and_the_url_token_becomes_a_cookie(
    tmp_path: Path,
) -> None:
    client = web.create_app(
        _catalog(tmp_path / "c.sqlite", 3), token="s3cret-token-for-tests"
    ).test_client()
    assert client.get("/").status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    moved = client.get("/?token=s3cret-token-for-tests")
    assert moved.status_code == 302 and "token" not in moved.headers["Location"]
    assert "HttpOnly" in moved.headers["Set-Cookie"]
    assert client.get("/").status_code == 200  # the cookie now carries it
    bearer = web.create_app(
        _catalog(tmp_path / "d.sqlite", 1), token="s3cret-token-for-tests"
    ).test_client()
    assert (
        bearer.get("/", headers={"Authorization": "Bearer s3cret-token-for-tests"}).status_code
        == 200
    )


@pytest.mark.parametrize("ref", ["20261201T000001Z-train-000001", "2026120"])
def test_report_of_an_unknown_or_ambiguous_ref_is_a_clear_error(tmp_path: Path, ref: str) -> None:
    from executor.errors import InputError

    location = _catalog(tmp_path / "c.sqlite", 3)
    if ref.endswith("000001"):
        page = web.report(location, ref)
        assert f'id="run-{ref}"' in page and "default-src 'none'" in page
    else:
        with pytest.raises(InputError, match="ambiguous"):
            web.report(location, ref)


def _regenerated(location: str, *, verification: str | None) -> tuple[str, str]:
    """A record that says a regeneration made it from an older run (verified or not)."""
    cat = catalog.open_catalog(location)
    old, new = "20261201T000000Z-train-000000", "20261201T000009Z-train-new"
    cat.put(
        {
            "runs": [
                {
                    **_key(new),
                    "name": "train",
                    "status": "succeeded",
                    "path": "/x",
                    "signer_kind": "key",
                    "signer": "Hl0j-forger",
                    "verification": verification,
                }
            ],
            "supersedes": [
                {
                    **_key(new),
                    "old_statement": _key(old)["statement_sha256"],
                    "old_run": old,
                    "regeneration": "20261201T000009Z-regenerate-abc",
                }
            ],
            "corrections": [
                {
                    **_key(new),
                    "old_digest": "sha256-tree-v1:" + "a" * 64,
                    "new_digest": "sha256-tree-v1:" + "b" * 64,
                }
            ],
        }
    )
    cat.close()
    return old, new


def test_a_regeneration_page_names_which_run_replaced_which(tmp_path: Path) -> None:
    location = _catalog(tmp_path / "c.sqlite", 2)
    old, new = _regenerated(location, verification="verified by key Hl0j")
    client = web.create_app(location).test_client()
    listing = client.get("/regenerations").data.decode()
    assert 'href="/regeneration/20261201T000009Z-regenerate-abc"' in listing
    page = client.get("/regeneration/20261201T000009Z-regenerate-abc").data.decode()
    assert f'href="/run/{old}"' in page and f'href="/run/{new}"' in page and "b" * 64 in page
    assert client.get("/regeneration/nope").status_code == 404
    shown = client.get(f"/run/{old}").data.decode()
    assert 'class="bad superseded">superseded by' in shown and "a claim" not in shown


def test_an_unverified_regeneration_is_shown_as_a_claim_never_as_superseded(
    tmp_path: Path,
) -> None:
    location = _catalog(tmp_path / "c.sqlite", 2)
    old, _ = _regenerated(location, verification=None)  # indexed, never verified
    client = web.create_app(location).test_client()
    shown = client.get(f"/run/{old}").data.decode()
    assert "superseded by" not in shown
    assert "a claim, not verified" in shown and "Hl0j-forger" in shown
    page = client.get("/regeneration/20261201T000009Z-regenerate-abc").data.decode()
    assert "a claim, not verified" in page


def test_a_run_id_two_records_claim_opens_a_conflict_page(tmp_path: Path) -> None:
    location = _catalog(tmp_path / "c.sqlite", 2)
    cat = catalog.open_catalog(location)
    claimed = "20261201T000001Z-train-000001"
    cat.put(
        {
            "runs": [
                {
                    "run_id": claimed,
                    "statement_sha256": "f" * 64,
                    "status": "succeeded",
                    "path": "/elsewhere/copy",
                    "signer_kind": "key",
                    "signer": "evil-hint",
                }
            ]
        }
    )
    cat.close()
    page = web.create_app(location).test_client().get(f"/run/{claimed}").data.decode()
    assert "2 records claim this run id" in page
    assert "/elsewhere/copy" in page and "/nowhere" in page and "evil-hint" in page


def test_the_ledger_shows_the_metrics_and_params_its_runs_share(tmp_path: Path) -> None:
    """The ledger showed no metric or param: now the ones every run on the page has are
    columns (or those ?column= names), a string param as its text, a hostile key inert."""
    cat = catalog.open_catalog(tmp_path / "c.sqlite")
    for i, opt in enumerate(("adam", "sgd")):
        key = _key(f"20261201T00000{i}Z-train-{i}")
        cat.put(
            {
                "runs": [
                    {**key, "name": "train", "started": f"2026-12-01T0{i}", "path": f"/x/{i}"}
                ],
                "params": [
                    {**key, "key": "opt", "value": f'"{opt}"'},
                    {**key, "key": "lr", "value": "0.5", "num": 0.5 / (i + 1)},
                ],
                "metrics": [
                    {**key, "file": "m.json", "key": "acc", "value": 0.9 + i / 100},
                    {**key, "file": "m.json", "key": "<b>x</b>", "value": float(i)},
                    *([{**key, "file": "m.json", "key": "only0", "value": 1.0}] if i == 0 else []),
                ],
            }
        )
    cat.close()
    client = web.create_app(str(tmp_path / "c.sqlite")).test_client()
    page = client.get("/").data.decode()
    heads = re.findall(r'<th class="num" title="([^"]+)">', page)
    assert heads == [
        "metrics.m.json:&lt;b&gt;x&lt;/b&gt;",
        "metrics.m.json:acc",
        "params.lr",
        "params.opt",
    ]
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    cells = re.findall(r'<td class="num">([^<]*)</td>', page)
    assert cells == ["1", "0.91", "0.25", "sgd", "0", "0.9", "0.5", "adam"]  # newest first
    chosen = client.get("/?column=metrics.m.json:only0").data.decode()
    assert re.findall(r'<td class="num">([^<]*)</td>', chosen) == ["", "1"]


def test_the_ledger_names_signers_short_and_verification_in_one_word(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half the ledger's width was signer keys and verification text: now a short name
    (a local alias, marked so, or a key's first characters, or an identity without its
    issuer) and one word, the whole of each on hover."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "config" / "rexec").mkdir(parents=True)
    (tmp_path / "config" / "rexec" / "aliases.toml").write_text(
        '[signers]\n"alice@example.com" = "alice"\n'
    )
    cat = catalog.open_catalog(tmp_path / "c.sqlite")
    signed = [
        ("key", "4uMIA0ouYVgxgjCYj1iEAhU=", "verified by key 4uMIA0ou"),
        ("sigstore", "alice@example.com (issuer https://accounts.example)", None),
        ("sigstore", "<i>bob</i>@example.com (issuer x)", "failed: <b>no</b>"),
    ]
    for i, (kind, who, verification) in enumerate(signed):
        key = _key(f"20261201T00000{i}Z-r-{i}")
        row = {**key, "started": f"2026-12-01T0{i}", "path": f"/x/{i}", "signer_kind": kind}
        cat.put({"runs": [{**row, "signer": who, "verification": verification}]})
    cat.close()
    page = web.create_app(str(tmp_path / "c.sqlite")).test_client().get("/").data.decode()
    cells = re.findall(
        r'<td class="mono" title="([^"]*)">([^<]*)</td><td class="(\w+)" title="([^"]*)">(\w+)</td>',
        page,
    )
    assert [(short, style, word) for _, short, style, _, word in cells] == [
        ("&lt;i&gt;bob&lt;/i&gt;@example.com", "bad", "failed"),
        ("alice", "muted", "unchecked"),
        ("key 4uMIA0ou…", "ok", "verified"),
    ]
    assert "(a local alias, not signed)" in cells[1][0] and "<b>" not in page
    assert cells[0][3] == "failed: &lt;b&gt;no&lt;/b&gt;"


def test_compare_takes_more_than_five_runs(tmp_path: Path) -> None:
    """Ticked in the ledger, any runs a page shows (50) are compared (it took 5)."""
    client = web.create_app(_catalog(tmp_path / "c.sqlite", 50)).test_client()
    ids = [f"20261201T{i:06d}Z-train-{i:06x}" for i in range(50)]
    page = client.get("/compare?" + "&".join(f"run={r}" for r in ids)).data.decode()
    assert re.findall(r'<th><a class="mono" href="/run/([^"]+)"', page) == ids
    assert 'type="checkbox" name="run"' in client.get("/").data.decode()
