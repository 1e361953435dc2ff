"""Names that used to clash now say what they are; the old names still resolve, with a warning."""

import pytest

import detforge
from detforge.data import records as data_records
from detforge.data import validate as data_validate
from detforge.engine import validate as engine_validate
from detforge.eval import records as eval_records


def test_records_and_validation_functions_have_distinct_names():
    assert data_records.LabeledImage is not eval_records.EvalImage
    assert data_validate.check_labels is not engine_validate.run_validation
    assert detforge.val is engine_validate.val  # the public API name is unchanged


@pytest.mark.parametrize(("module", "old", "new"), [
    (data_records, "ImageRecord", "LabeledImage"),
    (eval_records, "ImageRecord", "EvalImage"),
    (data_validate, "validate", "check_labels"),
    (engine_validate, "validate", "run_validation"),
])
def test_old_names_warn_and_resolve(module, old, new):
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(module, old) is getattr(module, new)
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018
