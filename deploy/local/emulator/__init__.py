"""stackgate's local AWS emulator: moto's server with a few small, switchable patches.

    .local/venv/bin/python deploy/local/emulator [--host 127.0.0.1] [--port 4566]
                                                 [--patches all|none|NAME,...]

Normally started through deploy/local/emulator.sh. moto (pinned in
deploy/local/requirements.txt) emulates CloudFormation well enough for stackgate's
end-to-end tests, except for a few gaps. Each module under patches/ closes one gap,
following AWS's documented behaviour, and wraps moto's own function rather than copying
it; its docstring names the gap, the moto source and the AWS documentation.
patches/__init__.py lists them, in the order they are applied.

  launcher.py   the command line: choose the patches, apply them, serve
  slow.py       the slow-operation knob (a test aid, not a patch)
  patches/      one module per patch; shared.py holds what several of them use

Which patches are applied: --patches, else $STACKGATE_MOTO_PATCHES, else "all". The value is
a comma list of tokens read left to right: "all", "none", a patch name (switch it on) or
"-name" (switch it off), e.g. "all,-delete_order". tests/python/emulator/test_moto_patches.py
turns each patch off in turn to prove that the gap is real and that the patch is what
closes it.

Slow operations (always installed, idle until given a rule): moto finishes a stack
operation inside the API call, so races with a deploy in flight cannot be staged.
$STACKGATE_MOTO_SLOW="glob=seconds,..." (e.g. "race-*=3", "*=1"), or at run time
POST /stackgate-api/slow {"stack": "race-*", "seconds": 3} (0 removes the rule; GET lists
the rules, DELETE clears them), keeps ExecuteChangeSet (create or update) and DeleteStack
of the matching stacks in CREATE_/UPDATE_/DELETE_IN_PROGRESS for that long; meanwhile
CreateChangeSet, ExecuteChangeSet and DeleteStack on them are refused as AWS refuses them.
A rule naming a CloudFormation operation ("DescribeStacks:race-*=3", or "operation":
"DescribeStacks" in the POST) instead delays that call's answer for the stacks it names by
StackName, as a slow AWS would. See slow.SlowOperations.
"""
