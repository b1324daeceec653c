from __future__ import annotations

from django.contrib import admin, messages

from perfdash.alerts import delivery
from perfdash.alerts.models import AlertEvent, AlertRule, Delivery, NotificationChannel, Silence


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
        form = super().get_form(request, obj, **kwargs)
        if obj and obj.url:  # a secret: show it masked; leave blank to keep it
            form.base_fields["url"].help_text = f"Now {obj.masked_url} — type a new URL to replace it."
        return form

    def get_object(self, request, object_id, from_field=None):
        channel = super().get_object(request, object_id, from_field)
        if channel is not None and request.method == "GET":
            channel._real_url, channel.url = channel.url, ""
        return channel

    def save_model(self, request, obj, form, change) -> None:
        if change and not obj.url:
            obj.url = NotificationChannel.objects.get(pk=obj.pk).url
        super().save_model(request, obj, form, change)

    @admin.action(description="Send a test notification")
    def send_test_notification(self, request, queryset) -> None:
        for channel in queryset:
            error = delivery.send_test(channel)
            if error:
                self.message_user(request, f"{channel.name}: failed — {error}", messages.ERROR)
            else:
                self.message_user(request, f"{channel.name}: test notification sent.")


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "metric", "statistic", "scope", "comparison", "threshold", "severity", "enabled"]
    list_filter = ["enabled", "severity", "scope", "metric"]
    search_fields = ["name", "metric"]
    filter_horizontal = ["channels"]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "severity", "runbook_url"]}),
        (
            "What to watch",
            {
                "fields": [
                    "metric",
                    "statistic",
                    "scope",
                    "node",
                    "agent",
                    "tag_key",
                    "tag_value",
                    "window_seconds",
                    "min_samples",
                ]
            },
        ),
        ("When", {"fields": ["comparison", "threshold", "recovery_threshold", "for_seconds", "no_data"]}),
        ("Who hears of it", {"fields": ["channels", "repeat_seconds", "send_resolved"]}),
    ]


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    list_display = ["rule", "node", "agent", "severity", "starts_at", "ends_at", "comment"]
    list_filter = ["severity"]


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnly):
    list_display = ["at", "rule", "subject", "from_state", "to_state", "value", "threshold", "silenced"]
    list_filter = ["to_state", "silenced", "rule"]
    search_fields = ["subject", "rule__name"]
    date_hierarchy = "at"


@admin.register(Delivery)
class DeliveryAdmin(ReadOnly):
    list_display = ["at", "channel", "status", "attempt", "duration_ms", "error"]
    list_filter = ["status", "channel"]
