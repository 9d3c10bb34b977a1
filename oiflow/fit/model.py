"""Model descriptions a person can read and write (YAML or a Python dict) → a :class:`Model`.

Example (YAML)::

    name: binary                      # optional; the JSON/PNG products are fit_<name>.*
    options: {bandwidth_smearing: auto, reference_wavelength_um: 1.65, search: true}
    star: {type: ud, diameter: 1.0}
    comp: {type: point, x: 5, y: 2, flux: 0.1}

The same as a dict: ``{"star": {"type": "ud", "diameter": 1.0}, "comp": {...}}``. Every key
except ``name`` and ``options`` is a component (a mapping with ``type``); ``components:`` may
also hold them. Each parameter is one of

* a number — free, starting there (``diameter: 1.0``);
* ``{value: 1.0, fixed: true}`` — fixed;
* ``{value: 1.0, min: 0.5, max: 2}`` — free within bounds;
* a string expression starting with ``=`` (or ``{expr: ...}``) — tied to other parameters,
  e.g. ``"=0.5 * star.diameter"``, ``"=comp.x * 2"`` (``+ − * / **``, sqrt, exp, log, sin, cos,
  tan, abs, pi).

Components (sizes, x, y in mas; pa in degrees; x East, y North, PA from North through East):

=============  =====================================================  ===========================
type           parameters                                             visibility
=============  =====================================================  ===========================
point                                                                 1
ud             diameter                                               2 J1(x)/x
gaussian       fwhm                                                   exp(−(πθρ)²/4ln2)
ld             diameter, law: power (alpha) | quadratic (u1, u2)      Hestroffer / Hanbury Brown
ring           diameter (inner), width (radial, 0 = thin ring)        J0, or a uniform annulus
background     (flux only)                                            0 (fully resolved)
image          file (FITS image, CDELT1/2 in deg), flux               DFT of the image
=============  =====================================================  ===========================

All components take ``flux`` (the first component's is fixed to 1 unless given), ``x``, ``y``
(fixed at 0 unless given) and, for the extended shapes, ``axis_ratio`` (minor/major ≤ 1) and
``pa`` (of the major axis). A chromatic flux is ``spectral_index`` (F_λ ∝ λ^index) or
``temperature`` (blackbody, K), relative to ``options.reference_wavelength_um``.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import load_yaml, unknown_key
from ..errors import ConfigError
from ..product_tree import safe_name

RESERVED = ("name", "options", "components")

#: parameters of each component type: name → (default or None when required, unit, lower, upper)
_COMMON = {
    "flux": (None, "", 0.0, math.inf),
    "x": (0.0, "mas", -math.inf, math.inf),
    "y": (0.0, "mas", -math.inf, math.inf),
}
_SHAPE = {
    "axis_ratio": (1.0, "", 1e-3, 1.0),
    "pa": (0.0, "deg", -math.inf, math.inf),
}
_CHROMATIC = {
    "spectral_index": (None, "", -math.inf, math.inf),
    "temperature": (None, "K", 1.0, math.inf),
}
TYPES: dict[str, dict[str, tuple]] = {
    "point": {},
    "ud": {"diameter": (None, "mas", 0.0, math.inf), **_SHAPE},
    "gaussian": {"fwhm": (None, "mas", 0.0, math.inf), **_SHAPE},
    "ld": {"diameter": (None, "mas", 0.0, math.inf), "alpha": (None, "", 0.0, 10.0),
           "u1": (None, "", -1.0, 2.0), "u2": (None, "", -1.0, 1.0), **_SHAPE},
    "ring": {"diameter": (None, "mas", 0.0, math.inf), "width": (0.0, "mas", 0.0, math.inf), **_SHAPE},
    "background": {},
    "image": {},
}
ALIASES = {"uniform_disk": "ud", "uniform disk": "ud", "disk": "ud", "gauss": "gaussian", "limb_darkened": "ld",
           "thin_ring": "ring", "resolved": "background", "star": "ud"}
_LD_LAWS = {"power": ("alpha",), "quadratic": ("u1", "u2")}
_NON_PARAMETERS = {"type", "law", "file"}
#: model options: bandwidth_smearing true | false | "auto" (decided from the data, see
#: oiflow.fit.evaluate.decide_smearing); search: look for the global minimum (oiflow.fit.search)
OPTIONS = {"bandwidth_smearing": "auto", "n_smear": None, "reference_wavelength_um": None, "search": True}


@dataclass
class Parameter:
    """One model parameter. ``name`` is "<component>.<param>"."""

    name: str
    value: float
    unit: str = ""
    free: bool = True
    lower: float = -math.inf
    upper: float = math.inf
    expr: str | None = None

    @property
    def tied(self) -> bool:
        return self.expr is not None

    def to_spec(self):
        if self.tied:
            return "=" + self.expr
        if not self.free:
            return {"value": self.value, "fixed": True}
        out: dict[str, Any] = {"value": self.value}
        if math.isfinite(self.lower):
            out["min"] = self.lower
        if math.isfinite(self.upper):
            out["max"] = self.upper
        return out if len(out) > 1 else self.value


@dataclass
class Component:
    name: str
    type: str
    law: str | None = None  # ld only
    file: str | None = None  # image only
    parameters: dict[str, Parameter] = field(default_factory=dict)

    @property
    def chromatic(self) -> str | None:
        for key in ("spectral_index", "temperature"):
            if key in self.parameters:
                return key
        return None


@dataclass
class Model:
    """A parsed model: components, parameters and options. Evaluate it with
    :class:`oiflow.fit.evaluate.ModelEvaluator`."""

    name: str
    components: list[Component]
    options: dict[str, Any]
    base_dir: Path | None = None  # where relative image files are looked up

    # -- parameters ------------------------------------------------------------------------
    @property
    def parameters(self) -> dict[str, Parameter]:
        return {p.name: p for c in self.components for p in c.parameters.values()}

    @property
    def free(self) -> list[Parameter]:
        return [p for p in self.parameters.values() if p.free and not p.tied]

    @property
    def tied(self) -> list[Parameter]:
        return [p for p in self.parameters.values() if p.tied]

    def component(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(name)

    def values(self, free_values=None) -> dict[str, float]:
        """All parameter values, with the free ones taken from ``free_values`` (in the order of
        :attr:`free`) when given, and the tied ones evaluated."""
        vals = {p.name: p.value for p in self.parameters.values() if not p.tied}
        if free_values is not None:
            for p, x in zip(self.free, free_values):
                vals[p.name] = float(x)
        for p in self._tied_order():
            vals[p.name] = float(evaluate_expression(p.expr, vals, where=p.name))
        return vals

    def _tied_order(self) -> list[Parameter]:
        tied = {p.name: p for p in self.tied}
        order, state = [], {}

        def visit(name, stack):
            if state.get(name) == "done":
                return
            if state.get(name) == "visiting":
                raise ConfigError(f"parameter expressions form a cycle: {' → '.join(stack + [name])}")
            state[name] = "visiting"
            for ref in expression_names(tied[name].expr):
                if ref in tied:
                    visit(ref, stack + [name])
            state[name] = "done"
            order.append(tied[name])

        for name in tied:
            visit(name, [])
        return order

    def with_values(self, values: dict[str, float]) -> "Model":
        """A copy whose non-tied parameters start at ``values``."""
        import copy

        m = copy.deepcopy(self)
        for p in m.parameters.values():
            if not p.tied and p.name in values:
                p.value = float(values[p.name])
        return m

    def to_spec(self) -> dict:
        """The description as a plain dict (round-trips through :func:`parse_model`)."""
        comps = {}
        for c in self.components:
            d: dict[str, Any] = {"type": c.type}
            if c.law:
                d["law"] = c.law
            if c.file:
                d["file"] = c.file
            for key, p in c.parameters.items():
                d[key] = p.to_spec()
            comps[c.name] = d
        return {"name": self.name, "options": dict(self.options), "components": comps}


# -- expressions -----------------------------------------------------------------------------
_FUNCS = {"sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10, "sin": math.sin,
          "cos": math.cos, "tan": math.tan, "abs": abs, "atan2": math.atan2, "radians": math.radians,
          "degrees": math.degrees}
_CONSTS = {"pi": math.pi}
_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b}


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def expression_names(expr: str) -> set[str]:
    """The "<component>.<param>" names an expression refers to."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"invalid parameter expression {expr!r}: {exc.msg}") from None
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and not isinstance(getattr(node, "_parent", None), ast.Attribute):
            d = _dotted(node)
            if d and "." in d:
                names.add(d)
    # keep only the outermost dotted names (a.b, not a)
    return {n for n in names if not any(m != n and m.startswith(n + ".") for m in names)}


def evaluate_expression(expr: str, values: dict[str, float], where: str = "") -> float:
    """Evaluate a tie expression safely (arithmetic, a few math functions, parameter names)."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
            return float(_FUNCS[node.func.id](*[ev(a) for a in node.args]))
        if isinstance(node, ast.Name) and node.id in _CONSTS:
            return _CONSTS[node.id]
        name = _dotted(node)
        if name is not None:
            if name not in values:
                raise ConfigError(f"{where}: expression {expr!r} refers to unknown parameter {name!r}")
            return float(values[name])
        raise ConfigError(f"{where}: unsupported element in expression {expr!r}")

    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"{where}: invalid expression {expr!r}: {exc.msg}") from None
    return ev(tree)


# -- parsing ---------------------------------------------------------------------------------
#: example model descriptions shipped as package data (also configs/models/ in a checkout), usable by name
MODEL_DIR = Path(__file__).resolve().parents[1] / "data" / "models"


def shipped_models() -> list[str]:
    """Names of the model descriptions shipped with oiflow (:data:`MODEL_DIR`)."""
    return sorted(p.stem for p in MODEL_DIR.glob("*.yaml"))


def shipped_model(name: str) -> Path | None:
    """The shipped model description called ``name`` (``ud`` or ``ud.yaml``), or None."""
    stem = name[:-5] if name.endswith(".yaml") else name
    path = MODEL_DIR / f"{stem}.yaml"
    return path if "/" not in name and path.is_file() else None


def load_model_spec(model) -> tuple[dict, str | None, Path | None]:
    """``model`` as a dict, a YAML/JSON file path or YAML text → (dict, name hint, base dir)."""
    if isinstance(model, Model):
        return model.to_spec(), model.name, model.base_dir
    if isinstance(model, dict):
        return model, None, None
    if isinstance(model, Path) or (isinstance(model, str) and "\n" not in model and ":" not in model
                                   and not model.lstrip().startswith("{")):
        path = Path(model)
        if not path.exists() and shipped_model(str(model)) is not None:
            path = shipped_model(str(model))
        if not path.exists():
            shipped = ", ".join(shipped_models())
            raise ConfigError(f"{path}: model description file not found (models shipped with oiflow, by name: {shipped})")
        return load_yaml(path), path.stem, path.parent
    if isinstance(model, str):
        return load_yaml("model description", text=model), None, None
    raise ConfigError(f"cannot read a model description from {type(model).__name__}")


def _parse_parameter(cname: str, key: str, spec, default, unit: str, lower: float, upper: float) -> Parameter:
    name = f"{cname}.{key}"
    if isinstance(spec, bool):
        raise ConfigError(f"{name}: expected a number, a mapping or an '=expression', got {spec!r}")
    if isinstance(spec, (int, float)):
        return Parameter(name, float(spec), unit, True, lower, upper)
    if isinstance(spec, str):
        s = spec.strip()
        if s.startswith("="):
            return Parameter(name, float("nan"), unit, False, lower, upper, expr=s[1:].strip())
        try:
            return Parameter(name, float(s), unit, True, lower, upper)
        except ValueError:
            raise ConfigError(f"{name}: {spec!r} is neither a number nor an '=expression'") from None
    if isinstance(spec, dict):
        unknown = set(spec) - {"value", "fixed", "min", "max", "expr", "free"}
        if unknown:
            raise ConfigError(f"{name}: unknown keys {sorted(unknown)} (use value, fixed, min, max, expr)")
        if "expr" in spec:
            return Parameter(name, float("nan"), unit, False, lower, upper, expr=str(spec["expr"]).lstrip("= "))
        fixed = spec.get("fixed", False)
        if not isinstance(fixed, bool):  # {fixed: 1.2} shorthand
            value, fixed = fixed, True
        else:
            value = spec.get("value", default)
        if value is None:
            raise ConfigError(f"{name}: no value given")
        lo = float(spec.get("min", lower))
        hi = float(spec.get("max", upper))
        if lo > hi:
            raise ConfigError(f"{name}: min {lo} > max {hi}")
        free = not fixed and spec.get("free", True)
        value = float(value)
        if free and not (lo <= value <= hi):
            raise ConfigError(f"{name}: start value {value} outside [{lo}, {hi}]")
        return Parameter(name, value, unit, bool(free), lo, hi)
    raise ConfigError(f"{name}: expected a number, a mapping or an '=expression', got {spec!r}")


def _parse_component(cname: str, spec: dict, primary: bool) -> Component:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cname):
        raise ConfigError(f"component name {cname!r}: use letters, digits and _ (it is used in expressions)")
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"component {cname!r}: a mapping with a 'type' ({', '.join(TYPES)}) is expected")
    ctype = str(spec["type"]).lower()
    ctype = ALIASES.get(ctype, ctype)
    if ctype not in TYPES:
        raise ConfigError(f"component {cname!r}: unknown type {spec['type']!r}; known: {', '.join(TYPES)}")
    allowed = {**_COMMON, **TYPES[ctype], **_CHROMATIC}
    comp = Component(cname, ctype)
    if ctype == "ld":
        comp.law = str(spec.get("law", "power")).lower()
        if comp.law not in _LD_LAWS:
            raise ConfigError(f"component {cname!r}: law must be power or quadratic, not {comp.law!r}")
        drop = {"u1", "u2"} if comp.law == "power" else {"alpha"}
        allowed = {k: v for k, v in allowed.items() if k not in drop}
        # default coefficients: no darkening
        allowed = {**allowed, **{k: (0.0,) + allowed[k][1:] for k in _LD_LAWS[comp.law]}}
    if ctype == "image":
        if "file" not in spec:
            raise ConfigError(f"component {cname!r}: an image component needs 'file' (a FITS image)")
        comp.file = str(spec["file"])
    unknown = sorted(set(spec) - set(allowed) - _NON_PARAMETERS)
    if unknown:
        raise ConfigError("\n".join(f"{cname}.{k}: {unknown_key(k, allowed, f'parameter of a {ctype} component')}"
                                     for k in unknown))
    if "spectral_index" in spec and "temperature" in spec:
        raise ConfigError(f"component {cname!r}: give spectral_index or temperature, not both")
    for key, (default, unit, lo, hi) in allowed.items():
        if key in spec:
            comp.parameters[key] = _parse_parameter(cname, key, spec[key], default, unit, lo, hi)
        elif key == "flux":
            if not primary:
                raise ConfigError(f"component {cname!r}: 'flux' is required (relative to the first "
                                  f"component, whose flux is 1 by default)")
            comp.parameters[key] = Parameter(f"{cname}.flux", 1.0, "", False, lo, hi)
        elif key in _CHROMATIC:
            continue
        elif default is None:
            raise ConfigError(f"component {cname!r} ({ctype}): parameter {key!r} is required")
        else:
            comp.parameters[key] = Parameter(f"{cname}.{key}", float(default), unit, False, lo, hi)
    return comp


def parse_model(model, name: str | None = None) -> Model:
    """Parse a model description (dict, YAML path or YAML text; see the module docstring)."""
    if isinstance(model, Model):
        return model
    data, hint, base = load_model_spec(model)
    try:
        return _model_from_spec(dict(data), name or data.get("name") or hint, base)
    except ConfigError as exc:
        if base is None:  # a dict or YAML text: no file to name
            raise
        # a file: each problem (one a line) named with it, as every configuration file's
        raise ConfigError("\n".join(f"{model}: {line}" for line in str(exc).splitlines())) from None


def _model_from_spec(data: dict, mname, base) -> Model:
    options = {**OPTIONS, **(data.pop("options", None) or {})}
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError("\n".join(f"options.{k}: {unknown_key(k, OPTIONS, 'option')}" for k in unknown))
    if options["bandwidth_smearing"] not in (True, False, "auto"):
        raise ConfigError(f"options.bandwidth_smearing: true, false or auto, not {options['bandwidth_smearing']!r}")
    if not isinstance(options["search"], bool):
        raise ConfigError(f"options.search: true or false, not {options['search']!r}")
    data.pop("name", None)
    comps_spec = data.pop("components", None) or {}
    comps_spec = {**comps_spec, **data}
    if not comps_spec:
        raise ConfigError("the model has no components")
    components = [_parse_component(str(k), v, primary=(i == 0)) for i, (k, v) in enumerate(comps_spec.items())]
    if not mname:
        mname = "_".join(c.type for c in components)
    mname = safe_name(str(mname))
    m = Model(mname, components, options, base)
    known = set(m.parameters)
    for p in m.tied:
        for ref in expression_names(p.expr):
            if ref not in known:
                raise ConfigError(f"{p.name}: expression {p.expr!r} refers to unknown parameter {ref!r}")
    m.values()  # evaluates ties once: cycles and bad expressions fail here
    if not m.free:
        raise ConfigError(f"model {mname!r} has no free parameter")
    return m
