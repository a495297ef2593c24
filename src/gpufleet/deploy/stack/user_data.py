"""The worker machine's boot script: settings to a file, then the worker container under systemd.

The worker runs the CUDA image with every GPU (``worker --gpus all``: one worker per
GPU). It is a systemd unit rather than a one-off ``docker run`` because of the warm
pool: a machine launched into the pool boots, pulls the image (the slow part of the
bootstrap) and is stopped; started again later, systemd starts the unit, whose first
step waits until Auto Scaling says the machine is ``InService``, so a machine in the
pool never takes work. Docker waits 480 s for the worker to stop: more than the longest
drain grace (420 s), less than the lifecycle hook's 600 s. The database password is read
from Secrets Manager at boot and kept in a root-only file, never in the user data.
"""

from __future__ import annotations

import re
from typing import Any

from troposphere import Base64, Join, Ref

from gpufleet.deploy.stack.datastores import secret_arn
from gpufleet.deploy.stack.environment import common
from gpufleet.deploy.stack.names import LIFECYCLE_HOOK, Names

_SCRIPT = r"""#!/bin/bash
set -euo pipefail
umask 077
cat > /etc/gpufleet.env <<'ENV'
AWS_REGION={Region}
GPUFLEET_IMDS_URL=http://169.254.169.254
GPUFLEET_AWS_LIFECYCLE_HOOK=%(hook)s
%(settings)s
ENV
secret='{SecretArn}'
if [ -n "$secret" ]; then
  password=$(aws secretsmanager get-secret-value --region {Region} --secret-id "$secret" \
    --query SecretString --output text \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["password"])')
  echo "PGPASSWORD=$password" >> /etc/gpufleet.env
fi
registry=$(echo '{WorkerImageUri}' | cut -d/ -f1)
aws ecr get-login-password --region {Region} \
  | docker login --username AWS --password-stdin "$registry"
docker pull '{WorkerImageUri}'
cat > /usr/local/bin/gpufleet-wait-in-service <<'WAIT'
#!/bin/bash
# A warm-pool machine waits here (and is stopped) until Auto Scaling puts it in service.
while true; do
  token=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' \
    http://169.254.169.254/latest/api/token || true)
  state=$(curl -sf -H "X-aws-ec2-metadata-token: $token" \
    http://169.254.169.254/latest/meta-data/autoscaling/target-lifecycle-state || true)
  [ "$state" = InService ] && exit 0
  sleep 5
done
WAIT
chmod 755 /usr/local/bin/gpufleet-wait-in-service
cat > /etc/systemd/system/gpufleet-worker.service <<'UNIT'
[Unit]
Description=gpufleet worker
After=docker.service network-online.target
Requires=docker.service
[Service]
ExecStartPre=/usr/local/bin/gpufleet-wait-in-service
ExecStartPre=-/usr/bin/docker rm -f gpufleet-worker
ExecStart=/usr/bin/docker run --name gpufleet-worker --gpus all --network host \
  --env-file /etc/gpufleet.env --stop-timeout 480 --log-driver awslogs \
  --log-opt awslogs-region={Region} --log-opt awslogs-group=%(log_group)s \
  '{WorkerImageUri}' worker --gpus all
ExecStop=/usr/bin/docker stop gpufleet-worker
TimeoutStopSec=3600
Restart=on-failure
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now gpufleet-worker.service
"""


def user_data(names: Names) -> Any:
    """The script as Fn::Join of text and expressions ({Name} marks one): plain Join, which
    every CloudFormation implementation resolves, rather than Fn::Sub with a variable map."""
    values: dict[str, Any] = {"Region": Ref("AWS::Region"), "SecretArn": secret_arn(),
                              "WorkerImageUri": Ref("WorkerImageUri")}
    lines = []
    for n, (name, value) in enumerate(common(names).items()):
        if isinstance(value, str):
            lines.append(f"{name}={value}")
        else:  # an expression
            values[f"Setting{n}"] = value
            lines.append(f"{name}={{Setting{n}}}")
    script = _SCRIPT % {"hook": LIFECYCLE_HOOK, "settings": "\n".join(lines),
                        "log_group": names.log_group("workers")}
    parts = re.split(r"\{(\w+)\}", script)  # text, name, text, name, ..., text
    return Base64(Join("", [values[p] if i % 2 else p for i, p in enumerate(parts) if p]))
