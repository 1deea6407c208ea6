"""Shapes of spend control's API answers (the 402 refusal and the estimate). Money is sent
as decimal strings, never floats."""

from rest_framework import serializers

MONEY = dict(max_digits=14, decimal_places=8, coerce_to_string=True)


class BudgetStandingSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    scope = serializers.CharField(help_text="platform, user or spread")
    period = serializers.CharField(help_text="day or month (UTC)")
    period_start = serializers.DateTimeField()
    resets_at = serializers.DateTimeField(help_text="When the period ends and spending resets.")
    limit_usd = serializers.DecimalField(**MONEY)
    spent_usd = serializers.DecimalField(**MONEY)
    reserved_usd = serializers.DecimalField(**MONEY)
    remaining_usd = serializers.DecimalField(**MONEY)


class BudgetCheckSerializer(BudgetStandingSerializer):
    allows = serializers.BooleanField(help_text="Whether the worst case fits now.")


class BudgetRefusalSerializer(serializers.Serializer):
    """HTTP 402: the reading was not created, costs nothing and is not queued."""

    detail = serializers.CharField()
    budget = BudgetStandingSerializer()
    needed_usd = serializers.DecimalField(
        **MONEY,
        help_text="The room the reading needed: its expected cost with the admission margin, "
        "or its dearest phase's worst case if larger.",
    )


class TaskEstimateSerializer(serializers.Serializer):
    task_type = serializers.CharField()
    batch_index = serializers.IntegerField()
    model = serializers.CharField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    expected_usd = serializers.DecimalField(**MONEY)
    worst_case_usd = serializers.DecimalField(**MONEY)
    output_source = serializers.CharField(help_text="history or max_tokens share")


class ReadingEstimateSerializer(serializers.Serializer):
    spread = serializers.CharField()
    expected_usd = serializers.DecimalField(**MONEY)
    worst_case_usd = serializers.DecimalField(
        **MONEY,
        help_text="The whole reading at worst: every task at max_tokens on the dearest "
        "model it may fall back to.",
    )
    room_needed_usd = serializers.DecimalField(
        **MONEY,
        help_text="The room each budget must have to admit it: its expected cost with the "
        "admission margin, or its dearest phase's worst case if larger (budgets.md).",
    )
    exempt_from_budgets = serializers.BooleanField()
    allowed = serializers.BooleanField(help_text="Every applicable budget allows it now.")
    budgets = BudgetCheckSerializer(many=True)
    tasks = TaskEstimateSerializer(many=True)
