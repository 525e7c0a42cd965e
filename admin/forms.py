"""Forms (Flask-WTF: every POST carries a CSRF token). They only parse input into types;
the rules about what a valid definition or profile is live in the database, whose errors
the views show beside the field they name."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

NORMALIZATION_TYPES = ["linear", "logarithmic", "sigmoid", "custom", "boolean", "piecewise", "percentile"]
MISSING_POLICIES = ["skip", "constant", "median"]


class NumberText(StringField):
    """A number typed as text: blank is None, anything else must parse as a float.
    (Text, not FloatField, so the form shows exactly what was typed next to the error.)"""

    def process_formdata(self, valuelist):
        super().process_formdata(valuelist)
        raw = (self.data or "").strip()
        self.number = None
        if raw:
            try:
                self.number = float(raw)
            except ValueError:
                self.number = ValueError


def _number(form, field):
    if getattr(field, "number", None) is ValueError:
        raise ValidationError(f"not a number: {field.data!r}")


def _required_number(form, field):
    _number(form, field)
    if getattr(field, "number", None) is None:
        raise ValidationError("required")


class ReasonMixin:
    reason = StringField("Reason for the change", validators=[DataRequired(message="say why (it goes into the history)"),
                                                                 Length(max=500)])


class DefinitionForm(ReasonMixin, FlaskForm):
    normalization_type = SelectField("Normalization", choices=NORMALIZATION_TYPES)
    normalization_params = TextAreaField("Parameters (JSON)", validators=[Length(max=20000)])
    raw_scale_min = NumberText("Raw scale min", validators=[_number])
    raw_scale_max = NumberText("Raw scale max", validators=[_number])
    normalized_weight = NumberText("Weight within category", validators=[_required_number])
    source_reliability = NumberText("Source reliability (0-1)", validators=[_required_number])
    missing_policy = SelectField("When missing", choices=MISSING_POLICIES)
    missing_value = NumberText("Missing value (0-1)", validators=[_number, Optional()])
    active = BooleanField("Active")


class EmptyForm(FlaskForm):
    """Only the CSRF token."""


class ProfileForm(ReasonMixin, FlaskForm):
    """Saving a profile: the weights come from the slider inputs (cat_*, m_*, en_*)."""
    description = TextAreaField("Description", validators=[Length(max=2000)])


class NewProfileForm(ReasonMixin, FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=50)])
    copy_from = SelectField("Copy weights from", choices=[])
    description = StringField("Description", validators=[Length(max=2000)])
