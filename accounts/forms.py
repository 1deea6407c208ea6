from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.utils.translation import gettext_lazy as _

from accounts.models import Profile
from accounts.usernames import look_alike_of
from readings.models import Language


class SignUpForm(UserCreationForm):
    language = forms.ChoiceField(
        label=_("Language of your readings"),
        choices=[("", _("The browser's language")), *Language.choices],
        required=False,
    )

    def clean_username(self):
        username = super().clean_username()
        if username and look_alike_of(username):
            raise forms.ValidationError(
                _("This name looks too much like a reader's who has it already: choose another."),
                code="look_alike",
            )
        return username

    def save(self, commit=True):
        user = super().save(commit=commit)
        if commit:
            Profile.objects.create(user=user, language=self.cleaned_data["language"])
        return user
