"""Any classifier of 1x28x28 digits into 10 classes, named one way everywhere: `module:Class` (model:Net by default),
built, checked, loaded with its weights, watched through a real forward pass, and summarized.

The user names the class, or a run's record names it; a record's class is imported only from the folder the user
runs from or from this project's own modules, never from elsewhere on Python's path."""
import copy
import importlib
import inspect
import os
import sys
import sysconfig
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from s5.checkpoint import CheckpointError, first_line, fit_failure, load_checkpoint

DEFAULT = "model:Net"
INPUT_SHAPE = (1, 28, 28)
CLASSES = 10
DEFAULT_WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "s5_net.pt")  # model:Net's


class NetworkError(ValueError):
    """A network that cannot be named, built or used as a digit classifier; the message says why and what to do."""


# Where Python's own library and the installed packages live: an error raised there is reported at the line of the
# user's code that called into them.
LIBRARIES = tuple({os.path.realpath(sysconfig.get_paths()[key]) for key in ("stdlib", "purelib", "platlib")})


def where(error):
    """'file, line N' of the deepest line of `error`'s traceback that is not in Python's library or a package:
    the line of the user's own code that failed."""
    own = [frame for frame in traceback.extract_tb(error.__traceback__)
           if not os.path.realpath(frame.filename).startswith(LIBRARIES) and not frame.filename.startswith("<")]
    return f"{os.path.basename(own[-1].filename)}, line {own[-1].lineno}" if own else "an unknown line"


def network_class(spec):
    """The nn.Module subclass that `spec` ('module:Class') names. The module is looked for in the working folder
    first (a file next to the notebook), then where Python looks. A module that cannot be imported is named in one
    sentence with its file and line."""
    module_name, _, class_name = str(spec).partition(":")
    if module_name.endswith(".py"):
        raise NetworkError(f"{spec} names the file {module_name}: name its module without .py, "
                           f"{module_name[:-3]}:{class_name}")
    if not module_name or not class_name.isidentifier():
        raise NetworkError(f"{spec!r} does not name a network: write module:Class, for example {DEFAULT} or "
                           "my_nets:Net6 for class Net6 in my_nets.py")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name.split(".")[0]:
            raise NetworkError(f"{module_name} imports {e.name}, which this Python does not have ({where(e)}): "
                               f"install it, or import something else") from None
        raise NetworkError(f"No module {module_name!r} for the network {spec}: put {module_name}.py in the folder "
                           "you run from, or name another module:Class") from None
    except SyntaxError as e:
        raise NetworkError(f"{os.path.basename(e.filename or module_name)}, line {e.lineno}: "
                           f"{type(e).__name__}: {e.msg}; fix it and run again") from None
    except Exception as e:  # the user's module ran and failed: where, and how
        raise NetworkError(f"Importing {module_name} failed at {where(e)}: {type(e).__name__}: {first_line(e)}"
                           ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise NetworkError(f"{module_name} has no class {class_name!r}: name one of its classes as {module_name}:Class")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise NetworkError(f"{spec} is not a torch.nn.Module class ({type(cls).__name__}): name the class of "
                           "your network")
    return cls


def name_of(model):
    """The module:Class of a network instance."""
    return f"{type(model).__module__}:{type(model).__qualname__}"


def file_name(network, suffix=".pt"):
    """The file a command or the notebook writes for `network` when none is named: my_s5_net.pt for the original's
    Net (never the shipped s5_net.pt), module.Class.pt for another, e.g. my_nets.Net6.pt; suffix '.onnx' for export."""
    return ("my_s5_net" if network == DEFAULT else network.replace(":", ".")) + suffix


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


def check_classifier(model):
    """Raises NetworkError unless `model` takes a (N, 1, 28, 28) batch and gives (N, 10) scores."""
    device = next(model.parameters(), torch.zeros(())).device
    was_training = model.training
    try:
        with torch.no_grad():
            output = model.eval()(torch.zeros(2, *INPUT_SHAPE, device=device))
    except Exception as e:  # a network that cannot even read a digit: say so, with its own words and its line
        raise NetworkError(f"{name_of(model)} cannot read a batch of shape (N, 1, 28, 28): "
                           f"{type(e).__name__}: {first_line(e)} ({where(e)})") from None
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != (2, CLASSES):
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise NetworkError(f"{name_of(model)} gives {shape} for a batch of 2 digits: a digit classifier must "
                           f"give 10 scores per image, (N, 10)")
    return model


def build(spec=DEFAULT):
    """A fresh instance of the network `spec` names, checked to be a digit classifier."""
    cls = network_class(spec)
    try:
        inspect.signature(cls).bind()
    except TypeError as e:
        raise NetworkError(f"{spec} cannot be built without arguments ({e}): give its __init__ defaults") from None
    try:
        model = cls()
    except Exception as e:  # the user's __init__ failed: where, and how
        raise NetworkError(f"Building {spec} failed at {where(e)}: {type(e).__name__}: {first_line(e)}") from None
    return check_classifier(model)


def importable_from_here(spec):
    """Whether the module of `spec` is a file in the folder the command runs from or among this project's own, the
    only places a class named by a weights file's record is imported from (a record is data, not a program)."""
    path = os.path.join(*spec.partition(":")[0].split(".")) + ".py"
    return any(os.path.isfile(os.path.join(folder, path)) for folder in (os.getcwd(), os.path.dirname(DEFAULT_WEIGHTS)))


def load(spec=None, checkpoint=None):
    """The network `spec` names with the weights of `checkpoint` (default: the shipped s5_net.pt), in eval mode
    on the CPU. spec None: the class the weights' record names (bare weights without a record: model:Net),
    imported only from where importable_from_here allows. A record that names another class than `spec` is refused
    in one sentence naming both."""
    checkpoint = checkpoint or DEFAULT_WEIGHTS
    try:
        state = load_checkpoint(checkpoint)
    except CheckpointError as e:
        raise NetworkError(str(e)) from None
    recorded = state.get("network")
    if spec is None:
        spec = recorded or DEFAULT
        if not importable_from_here(spec):
            raise NetworkError(f"{checkpoint} records the network {spec}, whose module is neither in the folder you "
                               "run from nor among this project's: run from the folder that holds it, or name the "
                               "class with --network")
    elif recorded is not None and recorded != spec:
        raise NetworkError(f"{checkpoint} holds weights of {recorded}, not of {spec}: name its class with "
                           f"--network {recorded}, or give weights trained for {spec} with --checkpoint")
    model = build(spec)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as e:
        raise NetworkError(f"{checkpoint} does not fit {spec} ({fit_failure(e)}): it was saved from another network: "
                           f"name that one with --network, or give weights trained for {spec} with --checkpoint"
                           ) from None
    return model.eval()


def add_network_option(parser, default=DEFAULT, default_text="%(default)s"):
    """--network, the one option with which every command is told a network; default_text says its default in the
    help (None: nothing)."""
    parser.add_argument("--network", default=default,
                        help="the network, as module:Class" + (f" (default: {default_text})" if default_text else ""))


def add_options(parser):
    """The options every command that reads a network's weights shares: --checkpoint and --network, whose default
    is the class the weights' record names."""
    parser.add_argument("--checkpoint", default=None,
                        help="its weights, a run's record or bare weights (default: the shipped s5_net.pt)")
    add_network_option(parser, None, f"the one the weights' record names, else {DEFAULT}")


def from_command_line(parser, argv, program):
    """The commands' shared start (predict.py, app.py, export.py, explain.py): adds --checkpoint and --network,
    parses `argv`, and loads those weights into that network, saying on stderr which class a record named. Returns
    (args, model); when they cannot be read it prints the one sentence, after `program`, and the model is None."""
    add_options(parser)
    args = parser.parse_args(argv)
    try:
        model = load(args.network, args.checkpoint)
    except NetworkError as e:
        print(f"{program}: {e}", file=sys.stderr)
        return args, None
    say_recorded_class(program, args, model)
    return args, model


def say_recorded_class(program, args, model):
    """On stderr, the class a command took from the weights' record, where --network did not name one."""
    if args.network is None and args.checkpoint is not None:
        print(f"{program}: {name_of(model)}, as the record of {args.checkpoint} names it", file=sys.stderr)


# What a forward pass is made of, as trace() sees each call.
CONVOLUTIONS = {F.conv2d, torch.conv2d}
POOLINGS = {F.max_pool2d, F.avg_pool2d, torch.max_pool2d}
ADAPTIVE_POOLINGS = {F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
LINEAR = {F.linear}
BATCH_NORMS = {F.batch_norm, torch.batch_norm}
DROPOUTS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
            torch.dropout, torch.feature_dropout, torch.alpha_dropout}
REDUCTIONS = {torch.mean, torch.Tensor.mean, torch.sum, torch.Tensor.sum, torch.amax, torch.Tensor.amax}
AVERAGES = {F.avg_pool2d, F.adaptive_avg_pool2d, torch.mean, torch.Tensor.mean}  # global ones are GAP
MERGES = {torch.add: "add", torch.Tensor.add: "add", torch.Tensor.__add__: "add", torch.Tensor.__radd__: "add",
          torch.Tensor.add_: "add", torch.Tensor.__iadd__: "add", torch.mul: "mul", torch.Tensor.mul: "mul",
          torch.Tensor.__mul__: "mul", torch.Tensor.__rmul__: "mul", torch.cat: "cat", torch.concat: "cat",
          torch.concatenate: "cat"}


def tensors_in(value):
    """The tensors in a call's arguments or output, however nested in lists, tuples and dicts."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in tensors_in(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in tensors_in(item)]
    return []


class _Calls(TorchFunctionMode):
    """Records each torch function a forward pass calls: the function, its arguments, its output and the
    module it was called from (the innermost one: a leaf module names its call, an enclosing one prefixes it)."""

    def __init__(self, model):
        super().__init__()
        self.calls, self.stack, self.hooks = [], [], []
        for name, module in model.named_modules():
            leaf = bool(name) and not list(module.children())  # the root names nothing: its calls are its own
            self.hooks.append(module.register_forward_pre_hook(
                lambda m, i, n=name, leaf=leaf: self.stack.append((n, leaf))))
            self.hooks.append(module.register_forward_hook(lambda m, i, o: self._leave()))

    def _leave(self):  # returns None: a forward hook's result would replace the output
        self.stack.pop()

    def __exit__(self, *exc):
        for hook in self.hooks:
            hook.remove()
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        if isinstance(output, torch.Tensor) or (isinstance(output, tuple) and tensors_in(output)):
            module, leaf = self.stack[-1] if self.stack else ("", False)
            self.calls.append({"func": func, "args": args, "kwargs": kwargs, "output": output, "module": module,
                               "leaf": leaf})
        return output


def trace(model, images):
    """[{func, args, kwargs, output, module, leaf}] of every torch function `model` calls on `images`, in order,
    under the caller's grad mode; the model's train/eval mode is left as it was."""
    with _Calls(model) as calls:
        model(images)
    return calls.calls


def uses(model):
    """Which of batch norm, dropout, global average pooling and a linear layer `model` uses, from a forward pass in
    eval mode (which still calls dropout and batch norm): {'batch norm': bool, 'dropout': ..., 'GAP': ...,
    'linear layer': ...}."""
    device = next(model.parameters(), torch.zeros(())).device
    was_training = model.training
    with torch.no_grad():
        calls = trace(model.eval(), torch.zeros(1, *INPUT_SHAPE, device=device))
    model.train(was_training)
    funcs = [call["func"] for call in calls]
    return {"batch norm": any(f in BATCH_NORMS for f in funcs), "dropout": any(f in DROPOUTS for f in funcs),
            "GAP": any(call["func"] in AVERAGES and is_global_pool(call) for call in calls),
            "linear layer": any(f in LINEAR for f in funcs)}


def is_global_pool(call):
    """Whether a pooling or a reduction leaves one value per channel of 4-d maps, as global pooling does."""
    inputs = tensors_in(call["args"][:1])
    if call["func"] not in POOLINGS | ADAPTIVE_POOLINGS | REDUCTIONS or not inputs or inputs[0].dim() != 4:
        return False
    batch, channels, height, width = inputs[0].shape
    output = tensors_in(call["output"])[0]
    return height * width > 1 and output.shape[0] == batch and output.numel() == batch * channels


def get_summary(Net, input_size=INPUT_SHAPE):
    """Prints torchsummary's table for a model class or instance; returns the parameter count.

    The table is made on a CPU copy, because torchsummary only knows 'cuda' and 'cpu' and defaults to 'cuda'."""
    from s5.env import require
    summary = require("torchsummary", "torchsummary").summary
    model = Net() if isinstance(Net, type) else copy.deepcopy(Net)
    model = model.to("cpu", memory_format=torch.contiguous_format)
    summary(model, input_size, device="cpu")
    return parameter_count(model)
