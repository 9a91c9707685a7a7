"""An SQS queue subscribed to an SNS topic: what events and topics both stand on.

SNS fans a published message out to every subscribed queue; with raw message delivery the
queue receives the body as published and its message attributes as SQS attributes. The queue
lets that topic, and only it, send to it (a queue policy). Subscribing a queue that already is
subscribed updates the subscription's filter policy instead, so a durable subscription that
comes back with another pattern gets what the new one asks for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from orquestrador.brokers.sqs.errors import ClientError, code_of, mapped

_EXISTS = {"QueueAlreadyExists", "QueueNameExists"}


@dataclass(frozen=True)
class Subscribed:
    url: str  # the queue's
    arn: str  # the queue's
    subscription: str  # the SNS subscription's ARN


async def subscribe_queue(
    sns: Any, sqs: Any, topic: str, name: str, *, attributes: dict[str, str], tags: dict[str, str],
    filter_policy: dict[str, Any] | None = None, fresh: bool = False,
) -> Subscribed:  # fmt: skip
    """Queue ``name`` (created if missing) subscribed to SNS topic ARN ``topic``, raw; ``fresh``:
    a queue of a random name, which no subscription can know yet (saves listing them)."""
    with mapped(f"cannot subscribe SQS queue {name} to SNS topic {topic}"):
        try:
            url = str((await sqs.create_queue(QueueName=name, Attributes=attributes, tags=tags))["QueueUrl"])
        except ClientError as exc:
            if code_of(exc) not in _EXISTS:
                raise
            url = str((await sqs.get_queue_url(QueueName=name))["QueueUrl"])
        reply = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        arn = str(reply["Attributes"]["QueueArn"])
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}},
        }]}  # fmt: skip
        await sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
        wanted = {"RawMessageDelivery": "true"}
        if filter_policy is not None:
            wanted["FilterPolicy"] = json.dumps(filter_policy)
        existing = None if fresh else await subscription_of(sns, topic, arn)
        if existing is None:
            reply = await sns.subscribe(
                TopicArn=topic, Protocol="sqs", Endpoint=arn, ReturnSubscriptionArn=True, Attributes=wanted
            )
            return Subscribed(url, arn, str(reply["SubscriptionArn"]))
        for key, value in wanted.items():
            await sns.set_subscription_attributes(
                SubscriptionArn=existing, AttributeName=key, AttributeValue=value
            )
        return Subscribed(url, arn, existing)


async def subscription_of(sns: Any, topic: str, endpoint: str) -> str | None:
    """The ARN of the subscription of SQS queue ARN ``endpoint`` to ``topic``, if there is one."""
    for subscription in await subscriptions(sns, topic):
        if subscription.get("Endpoint") == endpoint:
            return str(subscription["SubscriptionArn"])
    return None


async def subscriptions(sns: Any, topic: str) -> list[dict[str, Any]]:
    """Every subscription of ``topic`` (paged by SNS, 100 at a time)."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = {"NextToken": token} if token else {}
        reply = await sns.list_subscriptions_by_topic(TopicArn=topic, **page)
        found += reply.get("Subscriptions", [])
        token = reply.get("NextToken")
        if not token:
            return found
