from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.models import Agent, Message, ProviderName, QueueMode, Session, Turn
from agents.tools import registry


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
    parent = serializers.SlugRelatedField(slug_field="key", read_only=True)
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
    turn_id = serializers.IntegerField(read_only=True)

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


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class TurnSerializer(serializers.ModelSerializer):
    session = serializers.CharField(source="session.key", read_only=True)
    agent = serializers.CharField(source="agent.slug", read_only=True)
    error = serializers.SerializerMethodField()
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
