"""mmship's packaging.

Like mmseg and mmpretrain, the package carries the repository's configs,
tools and model index in ``mmship/.mim/`` so that an installed mmship (no
clone) serves ``mim train mmship CONFIG``, ``mim test mmship CONFIG`` and
``_base_ = ['mmship::...']`` in a user's config (mmengine resolves
``mmship::X`` to ``<mmship>/.mim/configs/X``). ``mmship/.mim`` is made at
build time and never committed (it is git-ignored):

- wheels (``pip install .``, ``pip wheel .``, ``python -m build``): build_py
  copies ``configs/``, ``tools/`` and ``model-index.yml`` into the build
  tree's ``mmship/.mim/``; the source tree is left as it is;
- sdists carry the originals (MANIFEST.in), so a wheel built from an sdist
  gets them too;
- editable installs (``pip install -e .``, ``setup.py develop``): symlinks
  ``mmship/.mim/{configs,tools,model-index.yml}`` in the source tree point at
  the originals, so edits show at once (mmseg does the same).

``import mmship`` registers the ``mmship::`` prefix with mmengine; outside
the tools, read such configs with ``mmship.utils.read_config``
(docs/custom_dataset.md). tests/test_packaging.py checks all of it from a
built wheel in a fresh virtual environment.
"""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

REPO = osp.dirname(osp.abspath(__file__))
# What mmship/.mim holds (files and folders of the repository root).
MIM_FILES = ('configs', 'tools', 'model-index.yml')
MIM_IGNORE = shutil.ignore_patterns('__pycache__', '*.pyc', '.*')


def version():
    scope = {}
    with open(osp.join(REPO, 'mmship', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def _remove(path):
    if osp.islink(path) or osp.isfile(path):
        os.remove(path)
    elif osp.isdir(path):
        shutil.rmtree(path)


def copy_mim_files(package_dir):
    """Copy the MIM files into ``<package_dir>/.mim`` (a wheel's build
    tree)."""
    mim = osp.join(package_dir, '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(REPO, name), osp.join(mim, name)
        _remove(dst)
        if osp.isdir(src):
            shutil.copytree(src, dst, ignore=MIM_IGNORE)
        else:
            shutil.copyfile(src, dst)


def link_mim_files():
    """Symlink the MIM files into the source tree's ``mmship/.mim`` (an
    editable install)."""
    mim = osp.join(REPO, 'mmship', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FILES:
        dst = osp.join(mim, name)
        _remove(dst)
        os.symlink(osp.relpath(osp.join(REPO, name), mim), dst)


class BuildPy(build_py):
    """build_py that also puts configs, tools and the model index into the
    package (``mmship/.mim``)."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):  # PEP 660 editable wheel
            link_mim_files()
        else:
            copy_mim_files(osp.join(self.build_lib, 'mmship'))

    def get_outputs(self, include_bytecode=1):
        # the copied files belong to the build (bdist_wheel's RECORD)
        outputs = super().get_outputs(include_bytecode)
        mim = osp.join(self.build_lib, 'mmship', '.mim')
        for root, _, files in os.walk(mim):
            outputs += [osp.join(root, f) for f in files]
        return outputs


class Develop(develop):
    """``setup.py develop`` (pip install -e . without PEP 660): symlinks."""

    def run(self):
        link_mim_files()
        super().run()


setup(
    name='mmship',
    version=version(),
    description='SHIP and DA-VPT prompt tuning for Vision Transformers in '
    'OpenMMLab (mmsegmentation, mmpretrain)',
    long_description=open(osp.join(REPO, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmship', 'mmship.*']),
    cmdclass={'build_py': BuildPy, 'develop': Develop},
    python_requires='>=3.9',
    # The tested pin set lives in requirements.txt; tools/setup_env.sh builds
    # it (mmcv needs a source build with ops against the installed torch).
    install_requires=[
        'torch>=2.1', 'mmcv>=2.0.0,<2.2.0', 'mmengine>=0.10.0,<1.0',
        'mmsegmentation==1.2.2', 'mmpretrain==1.2.0', 'timm>=1.0',
        'numpy', 'safetensors', 'tqdm', 'ftfy', 'regex',
    ],
    extras_require={'tests': ['pytest'], 'plots': ['matplotlib'],
                    'sweep': ['optuna==4.5.0'], 'mim': ['openmim==0.3.9']},
    license='Apache-2.0',
    zip_safe=False,
)
