"""Code comments cite the project's own docs: every `docs/X.md` named in
mmship/, tools/ and configs/ exists, every section they name ("docs/ship.md,
"Semantic hierarchy"") is a heading there, and nothing cites METHODS.md."""
import glob
import os.path as osp
import re

from conftest import REPO

CITE = re.compile(r'docs/(\w+)\.md[,\s(]*"([^"]+)"', re.S)


def _sources():
    for pattern in ('mmship/**/*.py', 'tools/**/*.py', 'configs/**/*.py',
                    'configs/**/*.md'):
        yield from glob.glob(osp.join(REPO, pattern), recursive=True)


def test_docs_citations_resolve():
    headings = {}
    for path in glob.glob(osp.join(REPO, 'docs', '*.md')):
        name = osp.splitext(osp.basename(path))[0]
        headings[name] = {h.strip().lower() for h in re.findall(
            r'^#+\s+(.*)$', open(path).read(), flags=re.M)}
    cited = 0
    for path in _sources():
        text = open(path).read()
        assert 'METHODS.md' not in text, path
        for doc in re.findall(r'docs/(\w+)\.md', text):
            assert doc in headings, f'{path}: docs/{doc}.md does not exist'
        for doc, section in CITE.findall(text):
            section = ' '.join(section.replace('#', ' ').split()).lower()
            assert any(h.startswith(section) for h in headings[doc]), \
                f'{path}: no section "{section}" in docs/{doc}.md'
            cited += 1
    assert cited >= 10
