# Container images, built with podman from a debootstrap-made base (no registry needed).
PODMAN ?= podman
PGQUEUE_BASE_IMAGE ?= localhost/pgqueue-base:bookworm
WORKER_IMAGE ?= localhost/pgqueue-worker:dev
OPERATOR_IMAGE ?= localhost/pgqueue-operator:dev
# The version's one place (pyproject reads it too); sed, so no Python is needed to parse a Makefile.
IMAGE_VERSION ?= $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' worker/pgqueue/_version.py)
IMAGE_REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE_CREATED ?= $(shell git log -1 --format=%cI 2>/dev/null || echo unknown)
# --network host: the build stage installs dependencies from the package index through the host.
IMAGE_BUILD_FLAGS ?= --network host --layers
IMAGE_BUILD_ARGS = --build-arg BASE_IMAGE=$(PGQUEUE_BASE_IMAGE) --build-arg VERSION=$(IMAGE_VERSION) \
	--build-arg REVISION=$(IMAGE_REVISION) --build-arg CREATED=$(IMAGE_CREATED)

.PHONY: images-setup
images-setup: ## Configure podman for this machine (runc, no default ulimits, storage driver)
	hack/images/podman-setup.sh

.PHONY: images-base
images-base: ## Build (or reuse from cache) the debootstrap base image localhost/pgqueue-base:bookworm
	PGQUEUE_BASE_IMAGE=$(PGQUEUE_BASE_IMAGE) hack/images/base-image.sh

.PHONY: images-wheels
images-wheels: venv ## Download the dependency wheels the image builds install offline (images/wheels/)
	PYTHON=$(PYTHON) hack/images/wheelhouse.sh

.PHONY: images
images: images-base images-wheels ## Build the worker and operator images with podman and print their sizes
	$(PODMAN) build $(IMAGE_BUILD_FLAGS) $(IMAGE_BUILD_ARGS) --ignorefile images/containerignore \
		-f images/worker/Dockerfile -t $(WORKER_IMAGE) .
	$(PODMAN) build $(IMAGE_BUILD_FLAGS) $(IMAGE_BUILD_ARGS) --ignorefile images/containerignore \
		-f images/operator/Dockerfile -t $(OPERATOR_IMAGE) .
	@$(PODMAN) image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' \
		--filter reference=$(WORKER_IMAGE) --filter reference=$(OPERATOR_IMAGE)

.PHONY: images-clean
images-clean: ## Remove the dev images and dangling build layers (the cached base rootfs stays)
	-$(PODMAN) rmi $(WORKER_IMAGE) $(OPERATOR_IMAGE)
	$(PODMAN) image prune --force

HELM ?= $(shell bash hack/k8s-bin-dir.sh)/helm

.PHONY: chart-lint
chart-lint: ## helm lint --strict the operator chart (default, namespaced and ServiceMonitor values)
	$(HELM) lint --strict charts/pgqueue-operator
	$(HELM) lint --strict charts/pgqueue-operator --set 'watchNamespaces={a,b}'
	$(HELM) lint --strict charts/pgqueue-operator --set metrics.serviceMonitor.enabled=true

.PHONY: chart-package
chart-package: ## Package the operator chart (the CRD link resolved into the archive) into the cache (PGQUEUE_CACHE/charts)
	$(HELM) package charts/pgqueue-operator --destination $(PGQUEUE_CACHE)/charts
