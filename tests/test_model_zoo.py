"""The model zoo: metafiles, model-index.yml and the config READMEs agree
with the configs on disk (mmengine and mim read them from the package)."""
import glob
import os.path as osp
import re

import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _load(path):
    with open(osp.join(REPO, path)) as f:
        return yaml.safe_load(f)


def test_model_index_imports_every_metafile():
    imports = _load('model-index.yml')['Import']
    on_disk = sorted(osp.relpath(p, REPO) for p in glob.glob(
        osp.join(REPO, 'configs', '**', 'metafile.y*ml'), recursive=True))
    assert sorted(imports) == on_disk
    assert len(set(imports)) == len(imports)


def test_metafiles_name_existing_configs():
    names = set()
    for meta_path in _load('model-index.yml')['Import']:
        meta = _load(meta_path)
        collections = {c['Name'] for c in meta['Collections']}
        assert meta['Models'], meta_path
        for model in meta['Models']:
            where = f'{meta_path}: {model.get("Name")}'
            assert model['Name'] not in names, f'{where}: name used twice'
            names.add(model['Name'])
            assert model['In Collection'] in collections, where
            # mmengine's `mmship::` lookup reads every model's Config
            assert osp.isfile(osp.join(REPO, model['Config'])), where
            assert model['Config'].startswith('configs/'), where
            assert model['Metadata']['Training Data'], where
            assert 'Weights' in model, where
            for result in model['Results'] or []:
                assert {'Task', 'Dataset', 'Metrics'} <= set(result), where
                assert result['Metrics'], where


def test_config_readmes_link_existing_configs():
    for readme in glob.glob(osp.join(REPO, 'configs', '*', 'README.md')):
        text = open(readme).read()
        assert '@' in text and 'title' in text, f'{readme}: no BibTeX'
        folder = osp.dirname(readme)
        for link in re.findall(r'\]\(([^)#]+\.py)\)', text):
            assert osp.isfile(osp.normpath(osp.join(folder, link))), \
                f'{readme}: {link} does not exist'
