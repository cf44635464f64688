"""gpulab.yaml as frozen, typed models: one class per schema object, built once from the
validated, defaults-filled settings (`Settings.from_values(settings.complete(...))`).

The schema (hub_config/schema/) stays the one source of truth for what a file may say, its
defaults and its error messages; these models are what code reads (`s.hub.data_dir`), and
tests/unit/hub_config/test_typed_settings.py walks the bundled schema and fails when a
property has no field here (or a field no property), or when a type, an enum or a default
disagrees.

Nothing here can be changed once built: models are frozen, lists are tuples, and the maps
the schema leaves open (`spawner.environment`, KubeSpawner overrides, tolerations, the
quotas by user and group) are read-only mappings, all the way down. Where a library wants
plain containers (traitlets config, JSON for a service), `as_dict()` / `plain()` give a copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self, TypeVar, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WrapSerializer

K = TypeVar("K")
V = TypeVar("V")


def freeze(value: Any) -> Any:
    """Read-only copies of the plain containers in `value`: mappings as MappingProxyType,
    lists as tuples (models are frozen already)."""
    if isinstance(value, BaseModel):
        return value
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


def plain(value: Any) -> Any:
    """What `freeze` made read-only, as plain dicts and lists again (models left as they are)."""
    if isinstance(value, BaseModel):
        return value
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


# A map the schema leaves open (free keys): read-only, and plain again when dumped.
FrozenMap = Annotated[Mapping[K, V], AfterValidator(freeze), WrapSerializer(lambda value, dump: dump(plain(value)))]
# JSON Schema's "number": an int stays an int (a profile's `cpu.limit: 4` is 4, not 4.0).
Number = Union[int, float]
LogLevel = Literal["DEBUG", "INFO", "WARN", "ERROR"]


class Model(BaseModel):
    """Frozen, no unknown keys. Also the base of what the hub hands a service (as JSON), which the
    service reads back with `of` at its entry."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    @classmethod
    def of(cls, value: Self | Mapping[str, Any]) -> Self:
        """`value` typed: itself, or a dict (JSON a service was handed; keys left out are defaults)."""
        return value if isinstance(value, cls) else cls.model_validate(value)

    def as_dict(self) -> dict[str, Any]:
        """This section as the plain dict it was built from (for code that still reads dicts,
        traitlets config and JSON)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Model:
        """Itself: nothing in it can change, so a copy could only be equal (and read-only
        mappings cannot be deep-copied)."""
        return self



class HubTls(Model):
    """Terminate HTTPS at gpulab's proxy with your certificate."""

    cert_file: str = ""
    key_file: str = ""


class Hub(Model):
    """Where the hub listens, where it keeps its data, and how it logs."""

    ip: str = "0.0.0.0"
    port: int = 8000
    base_url: str = "/"
    public_url: str = ""
    internal_port: int = 8081
    service_host: str = ""
    data_dir: str = ".gpulab"
    db_url: str = ""
    log_level: LogLevel = "INFO"
    metrics_public: bool = False
    stop_servers_on_exit: bool = False
    tls: HubTls = Field(default_factory=HubTls)


class Proxy(Model):
    """The public proxy in front of the hub and every user server."""

    kind: Literal["traefik", "configurable-http-proxy"] = "traefik"
    api_port: int = 8099
    api_url: str = ""


class AuthLocal(Model):
    """Settings for type "local"."""

    enable_signup: bool = True
    open_signup: bool = False
    minimum_password_length: int = 10
    allowed_failed_logins: int = 5
    seconds_before_next_try: int = 300


class AuthOauthGithub(Model):
    """Settings for type "github"."""

    organizations: tuple[str, ...] = ()


class AuthOauthGitlab(Model):
    """Settings for type "gitlab"."""

    url: str = "https://gitlab.com"
    groups: tuple[str, ...] = ()


class AuthOauthGoogle(Model):
    """Settings for type "google"."""

    hosted_domains: tuple[str, ...] = ()


class AuthOauthOidc(Model):
    """Settings for type "oidc" (Keycloak: https://KEYCLOAK/realms/REALM/protocol/openid-connect/...)."""

    authorize_url: str = ""
    token_url: str = ""
    userdata_url: str = ""
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    login_service: str = "single sign-on"


class AuthOauth(Model):
    """Settings shared by the identity-provider types (github, gitlab, google, oidc)."""

    client_id: str = ""
    client_secret: str = ""
    callback_url: str = ""
    scopes: tuple[str, ...] = ()
    allowed_groups: tuple[str, ...] = ()
    admin_groups: tuple[str, ...] = ()
    allow_all: bool = False
    manage_groups: bool = True
    github: AuthOauthGithub = Field(default_factory=AuthOauthGithub)
    gitlab: AuthOauthGitlab = Field(default_factory=AuthOauthGitlab)
    google: AuthOauthGoogle = Field(default_factory=AuthOauthGoogle)
    oidc: AuthOauthOidc = Field(default_factory=AuthOauthOidc)


class Auth(Model):
    """How people sign in, and who is an admin."""

    type: Literal["local", "github", "gitlab", "google", "oidc"] = "local"
    admin_users: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()
    local: AuthLocal = Field(default_factory=AuthLocal)
    oauth: AuthOauth = Field(default_factory=AuthOauth)


class SpawnerNamedServers(Model):
    """Several servers per user."""

    enabled: bool = True
    limit_per_user: int = 3


class SpawnerLocal(Model):
    """Settings for the local backend."""

    account_prefix: str = "gpulab-"
    home_root: str = ""
    gpu_inventory: str = "gpulab.compute.inventory:NvmlInventory"
    python: str = ""
    warm_start: bool = True


class SpawnerDocker(Model):
    """Settings for the docker backend."""

    host: str = ""
    gpu_request: Literal["nvidia", "cdi"] = "nvidia"
    mounts: tuple[str, ...] = ()
    pull_policy: Literal["ifnotpresent", "always", "never"] = "ifnotpresent"


class SpawnerKubernetesHomeStorage(Model):
    """A persistent volume per user for their home (/home/jovyan)."""

    capacity: str = ""
    storage_class: str = ""


class SpawnerKubernetes(Model):
    """Settings for the kubernetes backend."""

    namespace: str = ""
    hub_url: str = ""
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    uid: int = 1000
    fs_gid: int = 100
    service_account: str = ""
    home_storage: SpawnerKubernetesHomeStorage = Field(default_factory=SpawnerKubernetesHomeStorage)


class Spawner(Model):
    """How user servers are started."""

    backend: Literal["local", "docker", "kubernetes"] = "local"
    default_url: str = "/lab"
    start_timeout: int = 120
    http_timeout: int = 60
    named_servers: SpawnerNamedServers = Field(default_factory=SpawnerNamedServers)
    environment: FrozenMap[str, str] = {}
    local: SpawnerLocal = Field(default_factory=SpawnerLocal)
    docker: SpawnerDocker = Field(default_factory=SpawnerDocker)
    kubernetes: SpawnerKubernetes = Field(default_factory=SpawnerKubernetes)


class Database(Model):
    """gpulab's own database (projects, schedules, runs, SSH keys, GPU allocations)."""

    url: str = ""


class ProfileCpu(Model):
    """CPU cores."""

    guarantee: Number | None = None
    limit: Number | None = None


class ProfileMemory(Model):
    """Memory, as a size with a unit (K, M, G, T, or Ki, Mi, Gi, Ti)."""

    guarantee: str | None = None
    limit: str | None = None


class ProfileGpu(Model):
    """GPUs the server gets for itself; none by default."""

    count: int = 0
    models: tuple[str, ...] = ()
    mig_profile: str | None = None


class ProfileOptionChoice(Model):
    """One choice."""

    display_name: str
    default: bool = False
    kubespawner_override: FrozenMap[str, Any] = {}


class ProfileOptionUnlistedChoice(Model):
    """A value the user types instead of a listed choice."""

    enabled: bool = False
    display_name: str = ""
    display_name_in_choices: str = "Other..."
    validation_regex: str = ""
    validation_message: str = ""
    kubespawner_override: FrozenMap[str, Any] = {}


class ProfileOption(Model):
    """One option."""

    display_name: str
    choices: FrozenMap[str, ProfileOptionChoice] = {}
    unlisted_choice: ProfileOptionUnlistedChoice = Field(default_factory=ProfileOptionUnlistedChoice)


class Profile(Model):
    """One profile."""

    id: str  # always set: the loader fills it from slug or display_name (settings.complete)
    slug: str | None = None
    display_name: str
    description: str = ""
    cpu: ProfileCpu = Field(default_factory=ProfileCpu)
    memory: ProfileMemory = Field(default_factory=ProfileMemory)
    gpu: ProfileGpu = Field(default_factory=ProfileGpu)
    allowed_groups: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()
    default: bool = False
    idle_timeout: int = 0
    environments: tuple[str, ...] = ()
    node_selector: FrozenMap[str, str] = {}
    tolerations: tuple[FrozenMap[str, Any], ...] = ()
    kubespawner_override: FrozenMap[str, Any] = {}
    profile_options: FrozenMap[str, ProfileOption] = {}



# The schema's default `profiles`: one CPU profile with no limits.
DEFAULT_PROFILE = Profile(id="cpu", display_name="CPU", description="A server without a GPU.", default=True)


class Environments(Model):
    """Which environments (images) of the catalog users may pick."""

    catalog: str = ""
    offer: tuple[str, ...] = ()
    default: str = ""
    local_python: FrozenMap[str, str] = {}


class QuotaLimits(Model):
    """One user's limits, or a group's shared budget."""

    max_gpus: int | None = None
    max_servers: int | None = None
    gpu_hours_per_month: Number | None = None


class ProjectBudget(Model):
    """This project's budget."""

    gpu_hours_per_month: Number | None = None


class Quotas(Model):
    """Limits on concurrent use."""

    default: QuotaLimits = Field(default_factory=QuotaLimits)
    users: FrozenMap[str, QuotaLimits] = {}
    groups: FrozenMap[str, QuotaLimits] = {}
    projects: FrozenMap[str, ProjectBudget] = {}


class Culling(Model):
    """Stopping idle servers."""

    enabled: bool = True
    check_interval: int = 60
    gpu_utilization_threshold: int = 10


class SchedulerNotificationsSmtp(Model):
    """Mail server for e-mail notifications; leave host empty to send none."""

    host: str = ""
    port: int = 587
    starttls: bool = True
    username: str = ""
    password: str = ""
    sender: str = "gpulab@localhost"


class SchedulerNotifications(Model):
    """How notifications are delivered (each schedule chooses its webhooks and e-mails)."""

    webhook_timeout_seconds: int = 10
    webhook_allowed_networks: tuple[str, ...] = ()
    smtp: SchedulerNotificationsSmtp = Field(default_factory=SchedulerNotificationsSmtp)


class Scheduler(Model):
    """Scheduled notebook runs, by a hub service, as their owner, on the same profiles as servers."""

    enabled: bool = True
    max_concurrent_runs: int = 4
    max_runs_per_user: int = 2
    default_timeout_seconds: int = 86400
    missed_slots: Literal["run_once", "skip"] = "run_once"
    missed_slot_grace_seconds: int = 120
    prewarm_seconds: int = 10
    standby_runners: int = 4
    standby_idle_seconds: int = 600
    notifications: SchedulerNotifications = Field(default_factory=SchedulerNotifications)


class Ssh(Model):
    """SSH into your own server through a gateway the hub starts as a service."""

    enabled: bool = True
    port: int = 2222
    bind_address: str = ""
    public_host: str = ""
    allow_token_password: bool = False
    start_stopped_servers: bool = True
    max_failed_attempts: int = 5
    failure_window: int = 600
    lockout: int = 900
    servers_url: str = ""


class ProjectsLocal(Model):
    """Project folders on this machine (spawner.backend "local")."""

    root: str = ""
    group_prefix: str = ""


class ProjectsKubernetes(Model):
    """Project folders on Kubernetes: one ReadWriteMany volume, one sub-folder per project."""

    claim_name: str = ""
    storage_class: str = ""
    size: str = "100Gi"
    sub_path: str = "projects"
    mount_path: str = "/home/jovyan/projects"


class Projects(Model):
    """Team projects: a shared folder per project, members with roles kept as hub groups."""

    creators: tuple[str, ...] = ()
    reconcile_interval: int = 60
    sharing_check_seconds: int = 30
    local: ProjectsLocal = Field(default_factory=ProjectsLocal)
    kubernetes: ProjectsKubernetes = Field(default_factory=ProjectsKubernetes)


class MlflowS3(Model):
    """Credentials and endpoint for an s3:// artifacts_destination (AWS S3 or MinIO)."""

    endpoint_url: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""
    region: str = ""


class Mlflow(Model):
    """The hub-wide MLflow tracking server at /services/mlflow/: UI, REST API and artifact proxy."""

    enabled: bool = True
    backend_store_uri: str = ""
    auth_database_uri: str = ""
    artifacts_destination: str = ""
    s3: MlflowS3 = Field(default_factory=MlflowS3)
    tracking_uri: str = ""
    cache_seconds: int = 30


class Tensorboard(Model):
    """TensorBoard from JupyterLab, inside the user's server, behind the hub's URL prefix."""

    enabled: bool = True
    default_logdir: str = "~/logs"
    idle_timeout_seconds: int = 1800
    max_instances: int = 4


class Usage(Model):
    """GPU usage accounting: every GPU claim is an interval, sampled for utilisation and memory."""

    enabled: bool = True
    sample_interval: int = 10
    retention_days: int = 400
    dcgm_exporter_url: str = ""


class Settings(Model):
    """Every setting gpulab reads."""

    hub: Hub = Field(default_factory=Hub)
    proxy: Proxy = Field(default_factory=Proxy)
    auth: Auth = Field(default_factory=Auth)
    spawner: Spawner = Field(default_factory=Spawner)
    database: Database = Field(default_factory=Database)
    profiles: tuple[Profile, ...] = Field(default_factory=lambda: (DEFAULT_PROFILE,))
    environments: Environments = Field(default_factory=Environments)
    quotas: Quotas = Field(default_factory=Quotas)
    culling: Culling = Field(default_factory=Culling)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    ssh: Ssh = Field(default_factory=Ssh)
    projects: Projects = Field(default_factory=Projects)
    mlflow: Mlflow = Field(default_factory=Mlflow)
    tensorboard: Tensorboard = Field(default_factory=Tensorboard)
    usage: Usage = Field(default_factory=Usage)


    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Settings:
        """The typed settings of complete values (validated and defaults filled, as
        `settings.complete` returns them)."""
        return cls.model_validate(values)
