"""The command lines the launch scripts build: the Slurm ones run with a stand-in for ``srun`` on
PATH that records its arguments instead of starting a job."""
import os
import sys

import pytest

from tests.conftest import REPO, run_tool

FAKE_SRUN = '''#!/usr/bin/env bash
printf '%s\\n' "PYTHONPATH=$PYTHONPATH" "$@" > "$SRUN_CALL"
'''
SLURM_VARIABLES = ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS')


def slurm(tmp_path, script: str, *args: str, **variables):
    """Run ``tools/<script>`` with the fake srun and the given environment variables; the
    arguments srun got."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / 'srun').write_text(FAKE_SRUN)
    (bin_dir / 'srun').chmod(0o755)
    call = tmp_path / 'srun_call.txt'
    call.unlink(missing_ok=True)
    env = {key: value for key, value in os.environ.items() if key not in SLURM_VARIABLES}
    env.update(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', SRUN_CALL=str(call),
               **variables)
    result = run_tool(f'tools/{script}', *args, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    python_path, *srun_args = call.read_text().splitlines()
    # the package of the checkout the script is in comes first
    assert python_path.startswith(f'PYTHONPATH={REPO}/tools/..{os.pathsep}')
    return srun_args


def srun_command(tool: str, *args: str, tasks: int = 8, per_node: int = 8) -> list:
    """What the scripts should pass to srun."""
    return [
        '-p', 'part', '--job-name=job', f'--gres=gpu:{per_node}',
        f'--ntasks={tasks}', f'--ntasks-per-node={per_node}', '--cpus-per-task=5',
        '--kill-on-bad-exit=1', sys.executable, '-u', f'{REPO}/tools/{tool}', *args
    ]


def test_slurm_train_as_the_readme_shows_it(tmp_path):
    srun_args = slurm(tmp_path, 'slurm_train.sh', 'part', 'job', 'cfg.py', GPUS='16')
    assert srun_args == srun_command('train.py', 'cfg.py', '--launcher=slurm', tasks=16)


@pytest.mark.parametrize('args, train_args', [
    (['work'], ['--work-dir=work']),
    (['work', '--resume', '--cfg-options', 'a=1 b'], ['--work-dir=work', '--resume',
                                                      '--cfg-options', 'a=1 b']),
    (['--amp', 'x'], ['--amp', 'x']),
], ids=['work-dir', 'work-dir-and-options', 'options-only'])
def test_slurm_train_takes_an_optional_work_dir_then_train_options(tmp_path, args, train_args):
    srun_args = slurm(tmp_path, 'slurm_train.sh', 'part', 'job', 'cfg.py', *args)
    assert srun_args == srun_command('train.py', 'cfg.py', '--launcher=slurm', *train_args)


def test_slurm_variables_reach_srun(tmp_path):
    srun_args = slurm(tmp_path, 'slurm_test.sh', 'part', 'job', 'cfg.py', 'ckpt.pth', '--tta',
                      GPUS='4', GPUS_PER_NODE='4', SRUN_ARGS='--qos=high --time=1:00')
    expected = srun_command('test.py', 'cfg.py', 'ckpt.pth', '--launcher=slurm', '--tta',
                            tasks=4, per_node=4)
    python = expected.index(sys.executable)
    assert srun_args == expected[:python] + ['--qos=high', '--time=1:00'] + expected[python:]


@pytest.mark.parametrize('script, args, usage', [
    ('slurm_train.sh', ['part', 'job'], 'PARTITION JOB_NAME CONFIG [WORK_DIR]'),
    ('slurm_test.sh', ['part', 'job', 'cfg.py'], 'PARTITION JOB_NAME CONFIG CHECKPOINT'),
    ('dist_train.sh', ['cfg.py'], 'CONFIG GPUS'),
    ('dist_test.sh', ['cfg.py', 'ckpt.pth'], 'CONFIG CHECKPOINT GPUS'),
])
def test_missing_arguments_show_the_usage(tmp_path, script, args, usage):
    result = run_tool(f'tools/{script}', *args, timeout=60)
    assert result.returncode == 2
    assert f'usage: {REPO}/tools/{script} {usage}' in result.stderr
