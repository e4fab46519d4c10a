from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.models import (
    Agent,
    Message,
    ProviderName,
    QueueMode,
    Session,
    Turn,
    WaitingReason,
)
from agents.tools import registry
from beamclaw.api.schema import ErrorSerializer


class AgentSerializer(serializers.ModelSerializer):
    tools = serializers.ListField(child=serializers.CharField(), required=False)

    class Meta:
        model = Agent
        fields = [
            "slug",
            "name",
            "system_prompt",
            "provider",
            "model",
            "tools",
            "queue_mode",
            "max_iterations",
            "turn_timeout_seconds",
            "context_token_budget",
            "max_output_tokens",
            "temperature",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        validators = []  # a taken slug is a 409 from the service, not a 400

    def validate_tools(self, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(registry.names()))
        if unknown:
            raise serializers.ValidationError(
                f"Unknown tool(s): {', '.join(unknown)}. Available: {', '.join(registry.names())}."
            )
        return list(dict.fromkeys(value))


class AgentUpdateSerializer(AgentSerializer):
    class Meta(AgentSerializer.Meta):
        read_only_fields = ["slug", "created_at", "updated_at"]


class ProviderCredentialSerializer(serializers.Serializer):
    provider = serializers.ChoiceField(choices=ProviderName.choices, read_only=True)
    api_key = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=500
    )
    base_url = serializers.URLField(required=False, allow_blank=True, max_length=500)
    has_api_key = serializers.SerializerMethodField()
    updated_at = serializers.DateTimeField(read_only=True)

    def get_has_api_key(self, obj) -> bool:
        return bool(obj.api_key_encrypted)


class SessionSerializer(serializers.ModelSerializer):
    agent = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    parent = serializers.SlugRelatedField(
        slug_field="key", read_only=True, allow_null=True, help_text="null unless a sub-agent's"
    )
    message_count = serializers.IntegerField(source="last_seq", read_only=True)
    active = serializers.BooleanField(
        read_only=True, help_text="a turn of the session is queued, running or waiting now"
    )

    class Meta:
        model = Session
        fields = [
            "key",
            "agent",
            "parent",
            "message_count",
            "active",
            "created_at",
            "last_activity_at",
        ]


class SessionListQuerySerializer(serializers.Serializer):
    agent = serializers.CharField(required=False, help_text="only this agent's sessions")
    active = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: only sessions with a turn queued, running or waiting now; "
        "false: only the others",
    )


class MessageSerializer(serializers.ModelSerializer):
    turn_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = [
            "seq",
            "role",
            "content",
            "tool_calls",
            "tool_call_id",
            "name",
            "turn_id",
            "created_at",
        ]


class WaitingSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(
        choices=WaitingReason.choices,
        help_text="rate_limited: over the tenant's request rate; concurrency_limit: "
        "the tenant's concurrent turns are all taken",
    )
    resumes_at = serializers.DateTimeField(
        allow_null=True,
        help_text="when the turn runs again; null for concurrency_limit (when a running "
        "turn of the tenant ends)",
    )


class TurnSerializer(serializers.ModelSerializer):
    session = serializers.CharField(source="session.key", read_only=True)
    agent = serializers.CharField(source="agent.slug", read_only=True)
    error = serializers.SerializerMethodField()
    waiting = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    reply = serializers.SerializerMethodField()

    class Meta:
        model = Turn
        fields = [
            "id",
            "session",
            "agent",
            "status",
            "mode",
            "source",
            "attempts",
            "iterations",
            "cancel_requested",
            "waiting",
            "error",
            "usage",
            "reply",
            "created_at",
            "started_at",
            "finished_at",
        ]

    @extend_schema_field(ErrorSerializer(allow_null=True))
    def get_error(self, turn: Turn) -> dict | None:
        if not turn.error_code:
            return None
        return {"code": turn.error_code, "message": turn.error_message}

    @extend_schema_field(WaitingSerializer(allow_null=True))
    def get_waiting(self, turn: Turn) -> dict | None:
        """Why a queued turn is parked by its tenant's limits, and until when; else null."""
        if not turn.waiting_reason or turn.is_final:
            return None
        return WaitingSerializer(
            {"reason": turn.waiting_reason, "resumes_at": turn.resumes_at}
        ).data

    def get_usage(self, turn: Turn) -> dict[str, int]:
        return {"input_tokens": turn.input_tokens, "output_tokens": turn.output_tokens}

    def get_reply(self, turn: Turn) -> str | None:
        """The final answer's text once the turn succeeded (given in `context["replies"]`)."""
        return self.context.get("replies", {}).get(turn.pk)


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class SubmitMessageSerializer(serializers.Serializer):
    content = StrictCharField(
        allow_blank=True,
        trim_whitespace=False,
        help_text="The user's message (at most MESSAGE_MAX_BYTES, 100 KB by default).",
    )
    mode = serializers.ChoiceField(
        choices=QueueMode.choices,
        required=False,
        help_text="What to do if the session is busy; the agent's queue_mode by default.",
    )
    wait = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=settings.WAIT_MAX_SECONDS,
        help_text="Seconds to wait for the turn to finish (≤ 60). 200 if it did, else 202.",
    )


class SubmissionSerializer(serializers.Serializer):
    turn = TurnSerializer()
    message = MessageSerializer()
    new_turn = serializers.BooleanField(
        help_text="False when the message joined an already queued turn (mode 'collect')."
    )
    delayed = serializers.BooleanField(
        help_text="True when the task broker was unreachable: the message and its turn are "
        "stored and the turn runs as soon as the broker is back."
    )


# --- Live events: the `data` of each Server-Sent Event -----------------------------------


class TurnEventSerializer(serializers.Serializer):
    turn_id = serializers.IntegerField()


class TurnQueuedEventSerializer(TurnEventSerializer):
    session_key = serializers.CharField()
    mode = serializers.CharField(help_text="enqueue, collect, interrupt or reject")


class TurnStartedEventSerializer(TurnEventSerializer):
    attempt = serializers.IntegerField(help_text="1, or more when a worker resumed it")


class MessageDeltaEventSerializer(TurnEventSerializer):
    text = serializers.CharField(help_text="the next piece of the answer")


class ToolStartedEventSerializer(TurnEventSerializer):
    id = serializers.CharField(help_text="the tool call's id")
    name = serializers.CharField()
    arguments = serializers.JSONField(help_text="as the model gave them (text if not JSON)")


class ToolFinishedEventSerializer(TurnEventSerializer):
    id = serializers.CharField()
    name = serializers.CharField()
    ok = serializers.BooleanField()
    error_code = serializers.CharField(allow_null=True)
    content = serializers.CharField(help_text="the result, first 2,000 characters")
    duration_ms = serializers.IntegerField()


class TurnWaitingEventSerializer(TurnEventSerializer):
    reason = serializers.CharField(help_text="`sub-agents`")


class MessageCompletedEventSerializer(TurnEventSerializer):
    seq = serializers.IntegerField()
    content = serializers.CharField(allow_blank=True)


class TurnFailedEventSerializer(TurnEventSerializer):
    code = serializers.CharField()
    message = serializers.CharField()


class TurnFinishedEventSerializer(TurnEventSerializer):
    status = serializers.CharField(help_text="succeeded, failed or cancelled")
    error_code = serializers.CharField(help_text="empty when it succeeded")
    input_tokens = serializers.IntegerField(required=False)
    output_tokens = serializers.IntegerField(required=False)
    iterations = serializers.IntegerField(required=False)


TURN_EVENTS = {
    "turn.queued": TurnQueuedEventSerializer,
    "turn.started": TurnStartedEventSerializer,
    "message.delta": MessageDeltaEventSerializer,
    "tool.started": ToolStartedEventSerializer,
    "tool.finished": ToolFinishedEventSerializer,
    "turn.waiting": TurnWaitingEventSerializer,
    "message.completed": MessageCompletedEventSerializer,
    "turn.failed": TurnFailedEventSerializer,
    "turn.finished": TurnFinishedEventSerializer,
}
