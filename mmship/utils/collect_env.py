"""Print the environment report (paste it into bug reports):

    python -m mmship.utils.collect_env
"""
from mmship.utils.env import collect_env, main  # noqa: F401

if __name__ == '__main__':
    main()
