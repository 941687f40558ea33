"""Icons from the app (issue 15): the favicon is served to anyone (no 404 in any page's log), every page links it and
says its language, and no template or script draws a symbol from the system's fonts (ⓘ, ✓ and the like draw as
empty boxes in Debian's Chromium): they come from the bundled Font Awesome with a text alternative."""

from __future__ import annotations

import html
import re
from pathlib import Path

import app as app_package

APP_DIR = Path(app_package.__file__).parent
# Symbols a browser takes from whatever font the system has (written as characters or as HTML entities).
OLD_GLYPHS = "ⓘ❗❕✔✓✗✘✅❌▸▶►★☆⚠ℹ○●"
_COMMENTS = re.compile(r"\{#.*?#\}|/\*.*?\*/", re.S)


def test_favicon_is_served_without_sign_in(client):
    answer = client.get("/favicon.ico")
    assert answer.status_code == 200
    assert answer.mimetype in ("image/vnd.microsoft.icon", "image/x-icon")
    assert answer.data[:4] == b"\x00\x00\x01\x00"  # an ICO file
    svg = client.get("/static/img/favicon.svg")
    assert svg.status_code == 200 and b"<svg" in svg.data


def test_every_page_links_the_icon_says_its_language_and_skips_to_content(client):
    page = client.get("/login/").text
    assert '<html lang="en">' in page
    assert re.search(r'<link rel="icon" href="/static/img/favicon\.svg', page)
    assert '<a class="skip-link sr-only sr-only-focusable" href="#main-content">' in page
    assert 'id="main-content"' in page


def test_the_menu_stays_in_the_tab_order(ops_admin_client):
    page = ops_admin_client.get("/").text
    menu = page.split('<ul class="nav navbar-nav">')[1].split('<ul class="nav navbar-nav navbar-right">')[0]
    assert re.search(r'<a href="/eventview/list/">\s*<i class="fa fa-fw fa-history" aria-hidden="true"></i>', menu)
    assert "tabindex" not in menu


def test_no_template_or_script_draws_a_system_font_symbol():
    files = sorted(APP_DIR.glob("templates/**/*.html")) + sorted(APP_DIR.glob("static/js/*.js"))
    assert len(files) > 50
    found = []
    for path in files:
        # "Accounts ▸ List all" in a comment draws nothing; its lines stay, so that line numbers stay true.
        text = _COMMENTS.sub(lambda c: "\n" * c[0].count("\n"), path.read_text(encoding="utf-8"))
        text = html.unescape(text)  # &#10003; and &check; are ✓ too
        if path.suffix == ".js":  # and "\u2714" in a script is ✔
            text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), text)
        for number, line in enumerate(text.splitlines(), 1):
            glyphs = sorted({c for c in line if c in OLD_GLYPHS})
            if glyphs:
                found.append(f"{path.relative_to(APP_DIR)}:{number}: {''.join(glyphs)}")
    assert found == [], "use Font Awesome (fa fa-check, fa fa-info-circle, ...) with a text alternative:\n" + "\n".join(
        found
    )


def test_ticks_and_info_icons_carry_words_for_screen_readers(app):
    macros = app.jinja_env.get_template("portal/_macros.html").module
    tick = str(macros.tick(True))
    assert 'class="fa fa-check" aria-hidden="true"' in tick and '<span class="sr-only">yes</span>' in tick
    assert str(macros.tick(False)).strip() == ""
