"""Names in specs and in generated code: what is a safe identifier, class names, did-you-mean."""

from __future__ import annotations

import functools
import keyword


def did_you_mean(word: str, choices) -> str:
    return _did_you_mean(str(word), tuple(choices))


@functools.lru_cache(maxsize=8192)
def _did_you_mean(word: str, choices: tuple) -> str:
    """Cached: a spec that repeats one misspelling (or a generated one that repeats thousands) pays once."""
    import difflib

    if len(word) > 200:  # no misspelling is that long, and the search grows with the length
        return ""
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else ""


IDENTIFIER_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

# Attributes of torch.nn.Module / nn.Sequential: a submodule with one of these names would shadow them.
MODULE_ATTRIBUTES = frozenset("""
T_destination add_module append apply bfloat16 buffers call_super_init children compile cpu cuda double
dump_patches eval extend extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half
insert ipu load_state_dict modules mtia named_buffers named_children named_modules named_parameters parameters
pop register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory state_dict to to_empty
train training type xpu zero_grad
""".split())

# Names the generated code itself uses.
GENERATED_NAMES = frozenset("""
torch nn math hashlib keras np numpy self x y inputs outputs model build seed super OrderedDict Residual
GlobalPool Merge Slice ToTokens ToMap ChannelShuffle ConstantPad Rescale initialize reset_parameters INITIALIZERS Initializable
LayerReset spec_init tensor_seed generator layers ops initializers params branch shortcut
weight bias gamma beta
""".split())


def identifier_problem(name: str) -> str | None:
    """Why `name` cannot be used in generated code, or None if it can."""
    if not isinstance(name, str) or not name:
        return "a name must be a non-empty string"
    if not name.isascii() or set(name) - IDENTIFIER_CHARS or name[0].isdigit():
        return f"{name!r} is not an ASCII Python identifier ([A-Za-z_][A-Za-z0-9_]*)"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"{name!r} is a Python keyword"
    if name.startswith("_"):
        return f"{name!r} starts with an underscore, which is reserved for private and special names"
    if name in MODULE_ATTRIBUTES:
        return f"{name!r} is an attribute of torch.nn.Module and would shadow it"
    if name in GENERATED_NAMES:
        return f"{name!r} is used by the generated code"
    if len(name) > 64:
        return f"{name!r} is longer than 64 characters"
    return None


def class_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Model"
