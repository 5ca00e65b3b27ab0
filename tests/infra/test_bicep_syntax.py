"""Every Bicep file parses, and the files fit together (modules, parameters, loaded files, names).

No Bicep compiler can run here, so two independent grammars stand in for it: tree-sitter-bicep
(current Bicep syntax) and pycep (what checkov parses with). The cross-file checks are what
`bicep build` would report first: a missing module, an undeclared or a missing parameter.
"""

from __future__ import annotations

import json
import re
from typing import Any

from infra_support import INFRA, decorator, description, has_default, module_body

# Parameters of main.bicep without a default that main.parameters.json leaves out on purpose. azd
# would prompt for them, which `azd up --no-prompt` cannot: keep this empty.
PROMPTED_BY_AZD: dict[str, str] = {}
# ...or that azd fills itself, without asking (metadata azd.type 'generate'), once per environment.
GENERATED_BY_AZD = {
    "functionHostKey": "the host key APIM sends; generated once, kept in .azure/<env>/config.json",
    "mcpExtensionKey": "the MCP extension's system key APIM sends; generated once, likewise",
    "callerSigningKey": "the key APIM signs the caller headers with; generated once, likewise",
}


def test_every_bicep_file_parses(bicep_files: dict[str, dict[str, Any]]) -> None:
    problems = []
    for path, entry in bicep_files.items():
        if entry["tree_sitter_errors"]:
            problems.append(f"{path}: tree-sitter-bicep: {', '.join(entry['tree_sitter_errors'])}")
        if entry["pycep_error"]:
            problems.append(f"{path}: pycep (checkov's parser): {entry['pycep_error']}")
    assert not problems, "Bicep files that do not parse:\n" + "\n".join(problems)


def test_no_nested_child_resources() -> None:
    # pycep keeps only the last of several nested `resource` blocks, so checkov would silently skip
    # the others: child resources are declared at top level with `parent:`.
    nested = [
        f"{path.relative_to(INFRA)}:{number}"
        for path in INFRA.rglob("*.bicep")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.match(r"\s+resource\s+\w+\s+'", line)
    ]
    assert not nested, f"declare child resources at top level with parent: {nested}"


def test_modules_exist_and_get_declared_parameters(templates: dict[str, dict[str, Any]]) -> None:
    problems = []
    referenced = set()
    for path, template in templates.items():
        for module_name, module in (template.get("modules") or {}).items():
            target = (INFRA / path).parent / module["detail"]["path"]
            target_key = target.resolve().relative_to(INFRA.resolve()).as_posix()
            referenced.add(target_key)
            if module["type"] != "local" or target_key not in templates:
                problems.append(
                    f"{path}: module {module_name}: {module['detail']['path']} does not exist or does not parse"
                )
                continue
            declared = templates[target_key].get("parameters") or {}
            passed = module_body(module).get("params") or {}
            for name in sorted(set(passed) - set(declared)):
                problems.append(f"{path}: module {module_name} passes {name}, which {target_key} does not declare")
            for name, parameter in declared.items():
                if name not in passed and not has_default(parameter):
                    problems.append(
                        f"{path}: module {module_name} does not pass required parameter {name} of {target_key}"
                    )
    unused = sorted(set(templates) - referenced - {"main.bicep"})
    assert not unused, f"Bicep files no template uses: {unused}"
    assert not problems, "\n".join(problems)


def test_every_parameter_has_a_description(templates: dict[str, dict[str, Any]]) -> None:
    missing = [
        f"{path}: {name}"
        for path, template in templates.items()
        for name, parameter in (template.get("parameters") or {}).items()
        if not description(parameter)
    ]
    assert not missing, f"parameters without @description: {missing}"


def test_main_is_subscription_scoped_with_upper_snake_outputs(main_template: dict[str, Any]) -> None:
    assert main_template["globals"]["scope"]["value"] == "subscription"
    outputs = main_template.get("outputs") or {}
    assert outputs, "main.bicep has no outputs for azd"
    assert [name for name in outputs if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name)] == []


def test_loaded_files_exist() -> None:
    missing = []
    for path in INFRA.rglob("*.bicep"):
        for loaded in re.findall(r"load(?:Text|Json|Yaml)Content\('([^']+)'", path.read_text()):
            if not (path.parent / loaded).is_file():
                missing.append(f"{path.relative_to(INFRA)}: {loaded}")
    assert not missing, f"files loaded by Bicep that do not exist: {missing}"


def test_abbreviations_used_exist() -> None:
    abbreviations = json.loads((INFRA / "abbreviations.json").read_text())
    used = {name for path in INFRA.rglob("*.bicep") for name in re.findall(r"abbrs\.(\w+)", path.read_text())}
    assert used, "no resource name uses abbreviations.json"
    assert sorted(used - set(abbreviations)) == []


def test_resource_names_derive_from_the_resource_token() -> None:
    # Every name built from an abbreviation is unique per subscription, environment and region.
    main = (INFRA / "main.bicep").read_text()
    assert "var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))" in main
    names = [
        literal
        for path in INFRA.rglob("*.bicep")
        for literal in re.findall(r"'(\$\{abbrs\.\w+\}[^']*)'", path.read_text())
    ]
    assert names
    # The resource group is named after the environment (azd's convention); all else has the token.
    assert [
        name
        for name in names
        if "${resourceToken}" not in name and name != "${abbrs.resourcesResourceGroups}${environmentName}"
    ] == []


def test_parameters_file_matches_main(main_template: dict[str, Any]) -> None:
    parameters_file = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = main_template["parameters"]
    assert sorted(set(parameters_file) - set(declared)) == [], "main.parameters.json sets undeclared parameters"
    unset_required = {
        name for name, parameter in declared.items() if not has_default(parameter) and name not in parameters_file
    }
    assert unset_required == set(PROMPTED_BY_AZD) | set(GENERATED_BY_AZD), (
        f"required parameters azd can neither fill nor is expected to prompt: {unset_required}"
    )
    for name in GENERATED_BY_AZD:
        metadata = decorator(declared[name], "metadata") or {}
        assert metadata.get("azd", {}).get("type") == "generate", f"azd does not generate {name}"


def test_parameters_file_holds_only_azd_variables() -> None:
    # No value, and above all no secret, is committed: every parameter comes from the azd environment.
    parameters_file = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    for name, entry in parameters_file.items():
        value = entry.get("value")
        assert isinstance(value, str) and re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*(=[^}]*)?\}", value), (
            f"{name} is not an azd variable reference"
        )
