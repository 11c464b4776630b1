"""fusechat: implicit model fusion (FuseChat-3.0) from prompts to a fused target model.

The stages, in the order data flows through them:
prompts -> sample -> score -> build (-> sft -> dpo -> eval -> report).
"""

__version__ = "0.1.0"


class FusechatError(Exception):
    """An error the user can fix (bad recipe, bad input file, unreachable model).

    The CLI prints its message as one line and exits with code 2; it never shows a traceback.
    """
