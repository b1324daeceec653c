from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import path

from perfdash.alerts import delivery, engine
from perfdash.alerts.models import AlertEvent, AlertRule, Delivery, NotificationChannel, Silence
from perfdash.alerts.quantities import PERCENT, measured, shown, threshold_kind
from perfdash.lib import units
from perfdash.lib.admin import ReadOnlyAdmin


class ChannelForm(forms.ModelForm):
    """Secrets (URL, HMAC secret) are never rendered back; left blank, they stay as they are."""

    hmac_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Webhook: if set, the body is signed. Leave blank to keep the current one.",
    )

    def clean_url(self) -> str:
        url = self.cleaned_data.get("url", "")
        return url or (self.instance.url if self.instance.pk else "")

    def clean_hmac_secret(self) -> str:
        secret = self.cleaned_data.get("hmac_secret", "")
        return secret or (self.instance.hmac_secret if self.instance.pk else "")


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "target", "enabled", "disabled_reason"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "recipients"]
    actions = ["send_test_notification"]

    @admin.display(description="sends to")
    def target(self, channel: NotificationChannel) -> str:
        return channel.recipients if channel.kind == NotificationChannel.Kind.EMAIL else channel.masked_url

    def get_form(self, request, obj=None, **kwargs):
        kwargs["form"] = ChannelForm
        form = super().get_form(request, obj, **kwargs)
        if obj and obj.url:  # a secret: shown masked, and left as it is when the field stays blank
            form.base_fields["url"].help_text = f"Now {obj.masked_url} — type a new URL to replace it."
        return form

    def get_object(self, request, object_id, from_field=None):
        channel = super().get_object(request, object_id, from_field)
        if channel is not None and request.method == "GET":
            channel.url = ""  # never render the secret into the page
        return channel

    @admin.action(description="Send a test notification")
    def send_test_notification(self, request, queryset) -> None:
        for channel in queryset:
            error = delivery.send_test(channel)
            if error:
                self.message_user(request, f"{channel.name}: failed — {error}", messages.ERROR)
            else:
                self.message_user(request, f"{channel.name}: test notification sent.")


QUANTITY_HELP = (
    "With or without a unit: 2 s or 250 ms for a _ms metric, 100 MB for a _bytes one, 5/s for a "
    "rate; a bare number is in ms for _ms metrics, in bytes for _bytes ones. Forecast rules: days. "
    "Deploy rules: the smallest slowdown that notifies, in % (empty: any slowdown found). "
    "Outlier rules: MADs above the peers' median (5)."
)


class RuleForm(forms.ModelForm):
    """Thresholds typed and shown in the metric's units ("100 MB", "2 s"), stored in its base
    unit (ms, bytes), as the engine compares them with the stored values."""

    QUANTITIES = ("threshold", "recovery_threshold")

    threshold = forms.CharField(required=False, help_text=QUANTITY_HELP)
    recovery_threshold = forms.CharField(
        required=False,
        help_text=f"{AlertRule._meta.get_field('recovery_threshold').help_text} Units as the threshold's.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            for name in self.QUANTITIES:
                self.initial[name] = shown(self.instance, getattr(self.instance, name))

    def clean(self) -> dict:
        cleaned = super().clean()
        kind = threshold_kind(*(cleaned.get(name, "") for name in ("kind", "metric", "statistic")))
        for name in self.QUANTITIES:
            text = cleaned.get(name)
            if text is None:  # the field's own error is reported already
                continue
            try:
                cleaned[name] = units.parse(text, kind) if text else None
            except ValueError as exc:
                self.add_error(name, str(exc))
        if cleaned.get("threshold", "") is None:  # typed empty
            if cleaned.get("kind") == AlertRule.Kind.BURN:
                cleaned["threshold"] = 1.0  # set by the rule: a pair's rate
            elif kind is PERCENT:
                cleaned["threshold"] = 0.0
            else:
                self.add_error("threshold", forms.Field.default_error_messages["required"])
        return cleaned


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = RuleForm
    list_display = [
        "name",
        "kind",
        "metric",
        "statistic",
        "scope",
        "comparison",
        "threshold_shown",
        "severity",
        "enabled",
    ]
    list_filter = ["enabled", "kind", "severity", "scope", "metric"]
    search_fields = ["name", "metric"]
    filter_horizontal = ["channels"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="threshold", ordering="threshold")
    def threshold_shown(self, rule: AlertRule) -> str | None:
        return shown(rule, rule.threshold)

    def get_urls(self):
        preview = path(
            "preview/", self.admin_site.admin_view(self.preview_view), name="alerts_alertrule_preview"
        )
        return [preview, *super().get_urls()]

    def preview_view(self, request):
        """The change form's values, previewed on the last 24 h of data without saving."""
        # The preview is the rule form run on the fleet's data: no more open than that form.
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        form = self.get_form(request)(request.POST)
        context = {**self.admin_site.each_context(request), "title": "Rule preview", "errors": None}
        if not form.is_valid():
            rule = form.instance
            context["errors"] = form.errors
        else:
            rule = form.save(commit=False)
            changes = engine.preview(rule)
            notifying = {"firing", "repeat", *(["resolved"] if rule.send_resolved else [])}
            context.update(
                changes=changes,
                rows=[(c, measured(rule, c.value)) for c in changes],
                notifications=sum(c.event in notifying for c in changes),
            )
        context.update(rule=rule, threshold=shown(rule, rule.threshold), recovery=shown(rule, rule.recovery))
        return TemplateResponse(request, "admin/alerts/alertrule/preview.html", context)

    fieldsets = [
        (None, {"fields": ["name", "enabled", "severity", "runbook_url"]}),
        (
            "What to watch",
            {
                "description": "A forecast rule needs only its capacity target, and the number of days "
                "as its threshold: it fires when the target is projected to reach its limit within "
                "that many days (each node, for per-node targets). A deploy rule takes only an "
                "optional metric (one of DEPLOY_VERIFY_METRICS; empty: any of them), an optional "
                "node (that node's deploys and fleet-wide ones) and, as its threshold, the smallest "
                "slowdown that notifies: it notifies once for each verified deploy that made one of "
                "those metrics' p95 slower. An outlier rule watches every agent: its metric and "
                "statistic, its scope for who the peers are (each node's agents, or the whole fleet's), "
                "an optional node, its window, min samples as the fewest points an agent is judged on, "
                "and as its threshold how many MADs above the peers' median fire (5 is a good start).",
                "fields": [
                    "kind",
                    "capacity_target",
                    "slo",
                    "metric",
                    "statistic",
                    "scope",
                    "node",
                    "agent",
                    "tag_key",
                    "tag_value",
                    "window_seconds",
                    "min_samples",
                ],
            },
        ),
        ("When", {"fields": ["comparison", "threshold", "recovery_threshold", "for_seconds", "no_data"]}),
        ("Who hears of it", {"fields": ["channels", "repeat_seconds", "send_resolved"]}),
    ]


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    list_display = ["rule", "node", "agent", "severity", "starts_at", "ends_at", "comment"]
    list_filter = ["severity"]


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnlyAdmin):
    list_display = [
        "at",
        "rule",
        "subject",
        "from_state",
        "to_state",
        "value_shown",
        "threshold_shown",
        "silenced",
        "deploy",
    ]
    list_filter = ["to_state", "silenced", "rule"]
    list_select_related = ["rule", "deploy"]
    search_fields = ["subject", "rule__name"]
    date_hierarchy = "at"

    @admin.display(description="value", ordering="value")
    def value_shown(self, event: AlertEvent) -> str | None:
        return measured(event.rule, event.value)

    @admin.display(description="threshold", ordering="threshold")
    def threshold_shown(self, event: AlertEvent) -> str | None:
        return shown(event.rule, event.threshold)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["at", "channel", "status", "attempt", "duration_ms", "error"]
    list_filter = ["status", "channel"]
