from setuptools import find_packages, setup


def version():
    scope = {}
    with open('mmship/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmship',
    version=version(),
    description='SHIP and DA-VPT prompt tuning for Vision Transformers in '
    'OpenMMLab (mmsegmentation, mmpretrain)',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmship', 'mmship.*']),
    python_requires='>=3.9',
    # The tested pin set lives in requirements.txt; tools/setup_env.sh builds
    # it (mmcv needs a source build with ops against the installed torch).
    install_requires=[
        'torch>=2.1', 'mmcv>=2.0.0,<2.2.0', 'mmengine>=0.10.0,<1.0',
        'mmsegmentation==1.2.2', 'mmpretrain==1.2.0', 'timm>=1.0',
        'numpy', 'safetensors', 'scikit-learn', 'tqdm', 'ftfy', 'regex',
    ],
    extras_require={'tests': ['pytest'], 'plots': ['matplotlib'],
                    'sweep': ['optuna==4.5.0']},
    license='Apache-2.0',
)
